#!/usr/bin/env python3
"""Writes N lines of the exporter's Apache access-log format with a realistic OTRS request mix
(agent screens, GenericInterface calls, static files, customer portal) from 50 worker PIDs.
Deterministic (seeded), so every benchmark run reads the same file. Usage: gen_access_log.py N PATH"""
import random
import sys

n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(7)
actions = ["AgentTicketZoom", "AgentDashboard", "AgentTicketQueue", "AgentTicketSearch",
           "AgentTicketPhone", "AgentTicketEmail", "AgentTicketClose"]
pids = [str(p) for p in range(30000, 30050)]
with open(path, "w") as f:
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            uri = "/otrs/index.pl?Action=%s;TicketID=%d" % (rng.choice(actions), rng.randint(1, 99999))
        elif r < 0.7:
            uri = "/otrs/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST/Ticket/%d" % rng.randint(1, 99999)
        elif r < 0.95:
            uri = "/otrs-web/js/Core.UI.%d.js" % rng.randint(1, 50)
        else:
            uri = "/otrs/customer.pl?Action=CustomerTicketOverview;Subaction=MyTickets"
        method = "POST" if rng.random() < 0.2 else "GET"
        status = rng.choice(["200"] * 20 + ["302", "404", "500"])
        f.write("otrs-exporter:1\tapache\t%s\t%d\t%d\t%s\t%s\t%s\thttps://otrs.example.com/otrs/index.pl?Action=AgentTicketZoom\n"
                % (rng.choice(pids), rng.randint(1000, 3000000), rng.randint(100, 200000), method, uri, status))
