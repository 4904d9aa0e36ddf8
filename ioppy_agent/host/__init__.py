"""
The host: the TUN device on the reactor (L{tun}), addresses, MTU and
namespaces by netlink (L{netlink}), and pcap files (L{pcap}).
"""
