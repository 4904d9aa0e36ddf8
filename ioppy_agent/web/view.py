"""
L{SessionView}: what the live page shows, as JSON-ready dicts, from the
router's own state.  The agents' figures are those of their last
C{tun.stats} reports (packets between steered agents never pass the
router); the rates are worked out between one report and the next.
"""

from collections import deque
from itertools import combinations

# Rate points kept per agent: at the agents' default report interval (5 s),
# ten minutes.
HISTORY = 120


class _Agent:
    """
    What the view remembers of one agent between reports.
    """

    __slots__ = ("report_time", "packets", "last_packet", "rates")

    def __init__(self):
        self.report_time = None
        self.packets = None
        self.last_packet = None
        self.rates = deque(maxlen=HISTORY)


class SessionView:
    """
    Builds the page's snapshots of one router.
    """

    def __init__(self, router, connector, counters, standby, topology=None, recording=None):
        """
        @param router: The L{ioppy_agent.router.PacketRouter}.
        @param connector: The router's L{ioppy_agent.bus.BusConnector}.
        @param counters: The router's L{ioppy_agent.program.stats.Counters}.
        @param standby: Returns whether the router stands by.
        @param topology: The fixed L{ioppy_agent.router.Topology}, if any.
        @param recording: What the session recorder keeps (a line), if on.
        """
        self._router = router
        self._connector = connector
        self._counters = counters
        self._standby = standby
        self._topology = topology
        self._recording = recording
        self._agents = {}

    def _follow(self, name, report):
        """
        Note a report: its rates against the one before, and the last time
        the agent's counters moved.
        """
        seen = self._agents.get(name)
        if seen is None:
            seen = self._agents[name] = _Agent()
        time = report["time"]
        if time is None or time == seen.report_time:
            return seen
        packets = report["packets"]
        if seen.packets is not None and time > seen.report_time:
            span = time - seen.report_time
            rate = {d: max(0, packets[d] - seen.packets[d]) / span for d in ("in", "out")}
            seen.rates.append([time, rate["in"], rate["out"]])
            if rate["in"] or rate["out"]:
                seen.last_packet = time
        elif seen.packets is None and (packets["in"] or packets["out"]):
            seen.last_packet = time
        seen.report_time, seen.packets = time, dict(packets)
        return seen

    def snapshot(self, now):
        """
        @return: The page's state now.
        """
        router = self._router
        connector = self._connector
        reports = router.reports
        known = router.steering.agents
        names = router.agents
        for gone in set(self._agents) - set(names):
            del self._agents[gone]
        agents = []
        for name in names:
            report = reports.get(name)
            steered = known.get(name)
            entry = {"name": name,
                     "addresses": [str(n) for n in steered.networks] if steered else [],
                     "direct": bool(steered and steered.direct),
                     "reported": report is not None}
            if report is not None:
                seen = self._follow(name, report)
                entry.update(connected_since=report["connected_since"],
                             broker=report["broker"], packets=report["packets"],
                             bytes=report["bytes"], drops=report["drops"],
                             report_time=report["time"], last_packet=seen.last_packet,
                             rates=list(seen.rates))
            agents.append(entry)
        counters = self._counters
        url = connector.url
        return {
            "time": now,
            "router": {"state": connector.state.value, "standby": self._standby(),
                       "broker": f"{url.host}:{url.port}", "vhost": url.vhost,
                       "policy": router.policy.description, "recording": self._recording,
                       "packets": dict(counters.packets), "bytes": dict(counters.bytes),
                       "drops": dict(counters.drops)},
            "agents": agents,
            "links": self._links(set(names)),
            "observers": sorted(router.policy.observers()),
        }

    def _links(self, connected):
        if self._topology is not None:
            pairs = sorted(tuple(sorted(link)) for link in self._topology.links)
        else:
            pairs = list(combinations(sorted(connected), 2))
        return [{"ends": list(pair), "up": pair[0] in connected and pair[1] in connected}
                for pair in pairs]
