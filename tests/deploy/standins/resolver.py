"""TEST STAND-IN for the frontend's resolver (tests/deploy only), around the REAL nxc.

Logs nxc's command line to $STANDIN_LOG, then runs nixos-compose's own CLI (`nixos_compose.cli.main`, what the
`nxc` script runs) with the socket module's name look-ups answering from $STANDIN_HOSTS (lines "name address"),
as a Grid'5000 frontend's DNS answers for its nodes. Addresses resolve to themselves; any other name fails as an
unknown host does (so nxc's `socket.getfqdn("nfs")` gives back "nfs"), and no query ever leaves the machine.
"""

import ipaddress
import os
import socket
import sys
from pathlib import Path

with open(os.environ.get("STANDIN_LOG", "/dev/null"), "a") as log:
    log.write("nxc " + " ".join(sys.argv[1:]) + "\n")

hosts_file = os.environ.get("STANDIN_HOSTS")
HOSTS = (
    dict(line.split()[:2] for line in Path(hosts_file).read_text().splitlines() if line.strip()) if hosts_file else {}
)
real_getaddrinfo = socket.getaddrinfo


def address_of(name):
    try:
        return str(ipaddress.IPv4Address(name))
    except ValueError:
        pass
    if name in HOSTS:
        return HOSTS[name]
    raise socket.gaierror(socket.EAI_NONAME, f"Name or service not known (stand-in resolver): {name}")


def gethostbyname_ex(name):
    return name, [], [address_of(name)]


def gethostbyname(name):
    return address_of(name)


def gethostbyaddr(name):
    try:
        return gethostbyname_ex(name)
    except socket.gaierror:
        raise socket.herror(1, f"Unknown host (stand-in resolver): {name}") from None


def getaddrinfo(host, *args, **kwargs):
    return real_getaddrinfo(host if host in (None, "") else address_of(host), *args, **kwargs)


socket.gethostbyname_ex = gethostbyname_ex
socket.gethostbyname = gethostbyname
socket.gethostbyaddr = gethostbyaddr
socket.getaddrinfo = getaddrinfo

from nixos_compose.cli import main  # noqa: E402 (after the resolver is in place)

sys.argv[0] = "nxc"
main()
