"""
The message model, pure: what travels on the bus and what the cores decide,
with no I/O.

  - L{keys}: every name on the bus (routing keys, queues, exchanges);
  - L{wire}: ioppytest's packet bodies, JSON and raw, and L{wire.Message};
  - L{control}: the control messages (component ready and shutdown,
    C{tun.start}, C{tun.started}, routes, bound, stats);
  - L{routes}: the router's routes message, and who owns an address;
  - L{addressing}: agent names and TUN addresses;
  - L{grants}: which addresses each participant may own, and claims;
  - L{actions}: what the cores return for the services to carry out.
"""
