"""Baseline for `seedcast bench dns`: a plain dnspython responder, parse and render every query.

    python benchmarks/dns_baseline.py 127.0.53.12:5353 netcinema.test.zone kingcdn.test.zone

Serves the master files over UDP (zone = file name minus .zone): exact names,
`*` wildcards, CNAME chains across its zones, NXDOMAIN/NODATA with the SOA,
REFUSED elsewhere. No caches: every answer is built with dnspython.
"""

import socket
import sys

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone


def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    zones = {}
    for path in sys.argv[2:]:
        origin = dns.name.from_text(path.rsplit("/", 1)[-1].removesuffix(".zone"))
        zones[origin] = dns.zone.from_file(path, origin=origin, relativize=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, int(port)))
    while True:
        wire, client = sock.recvfrom(65535)
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            continue
        response = dns.message.make_response(query)
        name, rdtype = query.question[0].name, query.question[0].rdtype
        for _ in range(8):
            zone = next((z for origin, z in zones.items() if name.is_subdomain(origin)), None)
            if zone is None:
                response.set_rcode(dns.rcode.REFUSED if not response.answer else dns.rcode.NOERROR)
                break
            response.flags |= dns.flags.AA
            node = zone.get_node(name) or zone.get_node(dns.name.Name((b"*", *name.labels[1:])))
            found = node and node.get_rdataset(dns.rdataclass.IN, rdtype)
            cname = node and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if found or not cname:
                if found:
                    response.answer.append(dns.rrset.from_rdata_list(name, found.ttl, found))
                else:
                    response.set_rcode(dns.rcode.NOERROR if node else dns.rcode.NXDOMAIN)
                    soa = zone.find_rdataset(zone.origin, dns.rdatatype.SOA)
                    response.authority.append(dns.rrset.from_rdata_list(zone.origin, soa.ttl, soa))
                break
            response.answer.append(dns.rrset.from_rdata_list(name, cname.ttl, cname))
            name = cname[0].target
        sock.sendto(response.to_wire(max_size=512 if query.edns < 0 else query.payload), client)


if __name__ == "__main__":
    main()
