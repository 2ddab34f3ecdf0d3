"""The lab: throwaway real services (PostgreSQL today; DHCP, DNS, BMCs and VMs as they land)
that tests, benchmarks and the demo start themselves and stop by PID, whatever happens."""
