"""
The skeleton every program is built on: the options they share
(L{options}, L{tap}), exit statuses and signals (L{process}), counters,
the summary line and the status file (L{stats}), Prometheus metrics
(L{metrics}) and where they are served (L{listening}), and
L{service.BusService}, which starts, fails and stops a program on the bus.
"""
