"""
The session recorder: every packet of a session kept in a RabbitMQ stream
on the broker, and read back as pcapng for any window of time.

  - L{stream}: the stream's name, bindings and retention (the router
    declares it with C{--record}), and what each recorded message holds;
  - L{window}: the times a reader is given, and which messages fall in the
    window it asked for (pure);
  - L{pcapng}: the pcapng writer, one interface per agent;
  - L{capture}: the C{ioppy-capture} command.

The stream is bound to the keys agents publish packets on, so the broker
copies each packet into it as it routes it: the agents and the router do
nothing more per packet, and the record outlives the router.
"""
