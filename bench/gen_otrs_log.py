#!/usr/bin/env python3
"""Writes N lines of an OTRS File-backend log (Kernel::System::Log::File format) for
bench/otrs_log.sh: 40 modules, all four priorities, ~5% continuation lines of multi-line
messages, ~0.1% junk. Deterministic (seeded)."""
import random
import sys

n, path = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(42)
mods = [f"Kernel::System::{a}::{b}" for a in ("Ticket", "Web::InterfaceAgent", "GenericInterface::Provider", "Auth::DB", "Daemon::DaemonModules::SchedulerTaskWorker")
        for b in ("Run", "TicketGet", "TicketCreate", "Auth", "ArticleGet", "Request", "_Lock", "Check")]
prios = ["Error"] * 5 + ["Notice"] * 3 + ["Info"] * 2 + ["Debug"]
days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
with open(path, "w") as f:
    written = 0
    while written < n:
        r = rnd.random()
        if r < 0.05:
            f.write("    at /opt/otrs/Kernel/System/Ticket.pm line %d.\n" % rnd.randint(1, 9000))
        elif r < 0.051:
            f.write("[garbage line %d\n" % written)
        else:
            p = rnd.choice(prios)
            m = rnd.choice(mods)
            ts = "%s Mar %2d %02d:%02d:%02d 2025" % (rnd.choice(days), rnd.randint(1, 28), rnd.randint(0, 23), rnd.randint(0, 59), rnd.randint(0, 59))
            line = f"[{rnd.randint(1, 3000)}]" if p in ("Error", "Debug") else ""
            f.write(f"[{ts}][{p}][{m}]{line} Something happened with TicketID {rnd.randint(1, 10**6)} for user agent{rnd.randint(1, 50)}\n")
        written += 1
