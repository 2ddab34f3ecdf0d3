"""Generated configuration of the services a cluster needs: /etc/hosts, ISC dhcpd or Kea,
BIND, tftpd-hpa. Each is a ConfigManager (xcatd.netconf.manager) with one lifecycle."""
