"""
The agent's TUN interface: opened, moved into its network namespace,
addressed and brought up.
"""

from ..host import netlink
from ..host.tun import open_tun


class TunInterface:
    """
    Opens and configures the TUN interface, in this network namespace or
    another one.  The netlink and opening functions are injectable for tests.
    """

    def __init__(self, config, open_tun=open_tun, links=netlink):
        """
        @param config: An L{ioppy_agent.agent.AgentConfig}.
        @param open_tun: Opens a TUN device by name (L{ioppy_agent.host.tun.open_tun}).
        @param links: What L{ioppy_agent.host.netlink} offers.
        """
        self.config = config
        self._open_tun = open_tun
        self._links = links

    def open(self):
        """
        @return: The open device, configured and up.
        @raise TunError: or L{netlink.NetlinkFailure}, with the reason.
        """
        config = self.config
        if config.netns:
            netlink.require_netns(config.netns, self._links.netns_exists)
        # In another namespace the final name may be free there but taken here,
        # so the device is created under a kernel-chosen name and renamed on
        # arrival.
        device = self._open_tun("ioppy%d" if config.netns else config.tun_name)
        try:
            if config.netns:
                self._links.move_to_netns(device.name, config.netns, config.tun_name)
                device.name = config.tun_name
            self.configure(config.addresses)
        except Exception:
            device.close()
            raise
        return device

    def configure(self, addresses):
        """
        Give the interface C{addresses}, the MTU, and bring it up.
        """
        self._links.configure(self.config.tun_name, addresses.all(), self.config.mtu,
                              self.config.netns)

    def route(self, networks, remove=False):
        """
        Route C{networks} into the interface, or with C{remove} no longer.
        """
        self._links.route(self.config.tun_name, networks, remove, self.config.netns)
