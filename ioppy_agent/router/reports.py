"""
The agents' own reports (C{tun.stats}) as the router's metrics.
"""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


def agent_report_metrics(reports):
    """
    @return: Metric families of the agents' last C{tun.stats} reports.
    """
    families = {
        key: CounterMetricFamily(f"ioppy_router_agent_{key}",
                                 f"{key.capitalize()} the agent moved, as it last reported.",
                                 labels=["agent", "direction"])
        for key in ("packets", "bytes")}
    drops = CounterMetricFamily("ioppy_router_agent_drops",
                                "Packets the agent dropped, as it last reported.",
                                labels=["agent", "reason"])
    seen = GaugeMetricFamily("ioppy_router_agent_report_time_seconds",
                             "The agent's clock at its last report.", labels=["agent"])
    since = GaugeMetricFamily("ioppy_router_agent_connected_since_seconds",
                              "When the agent's current session began.", labels=["agent"])
    for name, report in sorted(reports.items()):
        for key, family in families.items():
            for direction in ("in", "out"):
                family.add_metric([name, direction], report[key][direction])
        for reason, count in sorted(report["drops"].items()):
            drops.add_metric([name, reason], count)
        if report["time"] is not None:
            seen.add_metric([name], report["time"])
        if report["connected_since"] is not None:
            since.add_metric([name], report["connected_since"])
    return (*families.values(), drops, seen, since)
