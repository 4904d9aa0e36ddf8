"""
The control messages on the bus, in ioppytest's format (JSON with
C{_api_version}), and what this project adds to them: building them and
reading them back.  Pure functions, no I/O.

  - C{testingtool.component.ready} and C{.shutdown}: a component comes and
    goes (the router announces itself as C{packet_router});
  - C{fromAgent.<name>.ip.tun.started}: an agent's addresses; this
    project's agents add C{ioppy_direct} (they take packets straight from
    the broker) and C{ioppy_routes} (the prefixes routed behind their host);
  - C{toAgent.<name>.ip.tun.start}: addresses an agent is asked to use;
  - C{routing.lossy.link.start}: drop the next N packets of the session;

and this project's own, under C{ioppy.#} where ioppytest's tools do not
look (see L{ioppy_agent.model.keys}):

  - C{ioppy.routes.<name>}: the router's routes for one agent
    (L{ioppy_agent.model.routes.Routes});
  - C{ioppy.bound.<name>}: the agent has taken those routes (it knows the
    addresses of the agents that may send to it), so they may now send to
    it straight;
  - C{ioppy.stats.<name>}: the agent's counters, every C{--report-interval}
    seconds, for the router's metrics (packets that go straight between
    agents never reach the router).
"""

import ipaddress
import json

from . import keys
from .actions import drop_reason
from .addressing import BadAddress, default_addresses
from .routes import BadRoutes, network, routes_from_json
from .wire import API_VERSION, BadMessage, Message, decode_json


def control(routing_key, **fields):
    """
    @return: A control L{Message} with ioppytest's C{_api_version} field.
    """
    body = dict(_api_version=API_VERSION, **fields)
    return Message(routing_key, json.dumps(body, sort_keys=True).encode("utf-8"))


def component_ready(name):
    """
    @return: C{testingtool.component.ready} for component C{name}.
    """
    return control(keys.COMPONENT_READY, component=name,
                   description="Component READY to start test suite.")


def component_shutdown(name):
    """
    @return: C{testingtool.component.shutdown} for component C{name}.
    """
    return control(keys.COMPONENT_SHUTDOWN, component=name,
                   description=f"{name} is out!. Bye!")


def _ioppytest_prefix(prefixes):
    """
    @return: The first IPv6 /64 of C{prefixes} in ioppytest's
        C{re_route_packets_prefix} form (C{"cccc"} for C{cccc::/64}), or
        C{None}.
    """
    for prefix in prefixes:
        if prefix.version == 6 and prefix.prefixlen == 64:
            groups = prefix.network_address.exploded.split(":")[:4]
            while groups and groups[-1] == "0000":
                groups.pop()
            return ":".join(g.lstrip("0") or "0" for g in groups) or "0"
    return None


def started(name, addresses, routes=()):
    """
    @param addresses: A L{ioppy_agent.model.addressing.TunAddresses}.
    @param routes: The prefixes routed behind the agent's host.
    @return: C{fromAgent.<name>.ip.tun.started} announcing C{addresses}.
    """
    return control(keys.tun_started(name), name=name, re_route_packets_host=None,
                   re_route_packets_if=None, re_route_packets_prefix=_ioppytest_prefix(routes),
                   ioppy_direct=True, ioppy_routes=[str(r) for r in routes],
                   **addresses.started_fields())


def started_info(body):
    """
    Read an agent's C{tun.started}, ours or an original agent's.

    @return: C{(networks, direct, broadcast)}: the agent's addresses (hosts,
        and the prefixes routed behind it) as L{ipaddress} networks, whether
        it takes packets straight from the broker, and the broadcast address
        of its IPv4 network (C{bytes}, or C{None}).
    @raise BadMessage: if the addresses do not parse.
    """
    obj = decode_json(body)
    found = []
    broadcast = None
    try:
        # ioppytest's message template has ipv4_host; the original agent
        # 0.2.20 fills ipv4_address (its TUN's configuration) and leaves
        # ipv4_host null.
        host4 = obj.get("ipv4_host") or obj.get("ipv4_address")
        if isinstance(host4, str) and host4:
            found.append(network(host4))
            mask = obj.get("ipv4_netmask")
            if isinstance(mask, str) and mask:
                subnet = ipaddress.IPv4Interface(f"{host4}/{mask}").network
                if subnet.prefixlen < 31:
                    broadcast = subnet.broadcast_address.packed
        prefix, host = obj.get("ipv6_prefix"), obj.get("ipv6_host")
        if isinstance(prefix, str) and isinstance(host, str) and prefix and host:
            host = host.lstrip(":")
            found.append(network(f"{prefix.rstrip(':')}::{host}"))
            found.append(network(f"fe80::{host}"))
        routes = obj.get("ioppy_routes")
        if isinstance(routes, list):
            found += [network(r) for r in routes if isinstance(r, str)]
        else:
            old = obj.get("re_route_packets_prefix")
            if isinstance(old, str) and old:
                found.append(network(f"{old.rstrip(':')}::/64"))
    except (BadAddress, ValueError) as e:
        raise BadMessage(f"tun.started with addresses that do not parse: {e}") from None
    return found, obj.get("ioppy_direct") is True, broadcast


def component_of(body):
    """
    @return: The C{component} named by a ready/shutdown body.
    @raise BadMessage: if there is none.
    """
    component = decode_json(body).get("component")
    if not isinstance(component, str) or not component:
        raise BadMessage("body has no 'component' name")
    return component


def packets_to_drop(body):
    """
    @return: C{number_of_packets_to_drop} from a C{routing.lossy.link.start}
        body.
    @raise BadMessage: if it is missing or not a whole number >= 0.
    """
    count = decode_json(body).get("number_of_packets_to_drop")
    if type(count) is not int or count < 0:
        raise BadMessage(
            f"number_of_packets_to_drop must be a whole number >= 0, not {count!r}")
    return count


def roll_call(name):
    """
    @return: C{toAgent.<name>.ip.tun.start} as a roll call: an original
        agent whose TUN is up answers any tun.start by announcing its
        addresses again (and one without a TUN opens it with the addresses
        given: ioppytest's defaults for C{agent_N}, as its own agent has
        them); an ioppy agent, seeing C{ioppy_roll_call}, only announces.
    """
    fields = dict(name=name, ioppy_roll_call=True)
    try:
        addresses = default_addresses(name)
    except BadAddress:
        pass
    else:
        fields.update(ipv6_prefix=addresses.ipv6_prefix, ipv6_host=addresses.ipv6_host,
                      ipv4_address=str(addresses.ipv4.ip), ipv4_host=str(addresses.ipv4.ip),
                      ipv4_netmask=str(addresses.ipv4.netmask), ipv6_no_forwarding=False)
    return control(keys.tun_start(name), **fields)


def is_roll_call(body):
    """
    @return: Whether a C{tun.start} body is a router's L{roll_call}.
    """
    return decode_json(body).get("ioppy_roll_call") is True


def tun_start_addresses(body):
    """
    @return: C{(ipv4_cidr, ipv6_prefix, ipv6_host)} from a C{tun.start} body,
        as text for L{ioppy_agent.model.addressing.make_addresses}.
    @raise BadMessage: if a field is missing or not text.
    """
    obj = decode_json(body)
    # The original agent reads ipv4_address and gives its TUN a /24; the
    # message template has ipv4_host and ipv4_netmask.
    if not obj.get("ipv4_host") and obj.get("ipv4_address"):
        obj = dict(obj, ipv4_host=obj["ipv4_address"],
                   ipv4_netmask=obj.get("ipv4_netmask") or "255.255.255.0")
    fields = {}
    for key in ("ipv4_host", "ipv4_netmask", "ipv6_prefix", "ipv6_host"):
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            raise BadMessage(f"tun.start has no usable {key!r} (got {value!r})")
        fields[key] = value
    return (f"{fields['ipv4_host']}/{fields['ipv4_netmask']}",
            fields["ipv6_prefix"], fields["ipv6_host"])


def routes_message(name, routes):
    """
    @return: The message telling agent C{name} its L{Routes}.
    """
    return control(keys.routes(name), **routes.to_json())


def routes_of(body):
    """
    @return: The L{Routes} of a routes message.
    @raise BadMessage: if it is not one (L{ioppy_agent.model.routes.BadRoutes}
        says why).
    """
    try:
        return routes_from_json(decode_json(body))
    except BadRoutes as e:
        raise BadMessage(f"routes message refused: {e}") from None


def bound(name, routes):
    """
    @return: C{ioppy.bound.<name>}: agent C{name} has taken C{routes}.
    """
    return control(keys.bound(name), router=routes.router, serial=routes.serial)


def bound_of(body):
    """
    @return: C{(router, serial)} of a C{tun.bound} message.
    @raise BadMessage: if it has neither.
    """
    obj = decode_json(body)
    router, serial = obj.get("router"), obj.get("serial")
    if not isinstance(router, str) or type(serial) is not int:
        raise BadMessage("tun.bound needs a router id and a whole serial number")
    return router, serial


def stats(name, counters, now, connected_since, broker):
    """
    @param counters: The agent's L{ioppy_agent.program.stats.Counters}.
    @param now: The agent's clock, in seconds.
    @param connected_since: When the current session began, or C{None}.
    @param broker: C{host:port} of the broker node connected to.
    @return: C{ioppy.stats.<name>}.
    """
    return control(keys.stats(name), name=name, time=now, connected_since=connected_since,
                   broker=broker,
                   packets={d: counters.packets[d] for d in ("in", "out")},
                   bytes={d: counters.bytes[d] for d in ("in", "out")},
                   drops=dict(counters.drops))


def _count(value):
    return type(value) is int and value >= 0


def stats_of(body):
    """
    @return: The checked body of a C{tun.stats} message, as a dict with
        C{time}, C{connected_since}, C{broker}, C{packets}, C{bytes} and
        C{drops}.
    @raise BadMessage: if it is not one.
    """
    obj = decode_json(body)
    report = {}
    for key in ("packets", "bytes"):
        value = obj.get(key)
        if not isinstance(value, dict) or set(value) != {"in", "out"} or \
                not all(_count(v) for v in value.values()):
            raise BadMessage(f"tun.stats needs {key} in and out, whole numbers")
        report[key] = value
    drops = obj.get("drops", {})
    if not isinstance(drops, dict) or len(drops) > 64 or not all(
            isinstance(k, str) and len(k) <= 64 and _count(v) for k, v in drops.items()):
        raise BadMessage("tun.stats drops must map up to 64 reasons to whole numbers")
    # A reason that is not one of ours counts as "other": what an agent
    # reports cannot add labels to the router's metrics.
    known = {}
    for reason, count in drops.items():
        key = drop_reason(reason)
        known[key] = known.get(key, 0) + count
    report["drops"] = known
    for key in ("time", "connected_since"):
        value = obj.get(key)
        if value is not None and (type(value) not in (int, float) or value != value):
            raise BadMessage(f"tun.stats {key} must be a number of seconds")
        report[key] = value
    broker = obj.get("broker")
    report["broker"] = broker if isinstance(broker, str) and len(broker) <= 300 else None
    return report
