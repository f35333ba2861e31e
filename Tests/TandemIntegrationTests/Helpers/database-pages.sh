#!/bin/sh
# Makes the pages of two real databases, for tests and scripts/bench to replicate:
#   OUTDIR/postgres.pages  PostgreSQL's relation files (base/, files over 8 KiB) of a pgbench
#                          database (scale 4) after a 5 s pgbench run;
#   OUTDIR/sqlite.pages    a SQLite database: a table of orders with text columns and an index.
# Usage: database-pages.sh OUTDIR   (as root: PostgreSQL runs as the postgres user)
set -eu
out=$1
mkdir -p "$out"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
d=$(mktemp -d /tmp/tandem-pg.XXXXXX)
trap 'runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$d"' EXIT
chown postgres "$d"
runuser -u postgres -- "$PGBIN/initdb" -D "$d/data" -A trust >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -l "$d/log" -o "-k $d -c listen_addresses='' -p 5999" -w start >/dev/null
runuser -u postgres -- "$PGBIN/pgbench" -h "$d" -p 5999 -i -s 4 postgres >/dev/null 2>&1
runuser -u postgres -- "$PGBIN/pgbench" -h "$d" -p 5999 -c 4 -T 5 postgres >/dev/null 2>&1
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -w stop >/dev/null
find "$d/data/base" -type f -size +8k | sort | xargs cat > "$out/postgres.pages"
rm -f "$out/sqlite.pages"
/usr/bin/python3 - "$out/sqlite.pages" <<'PY'
import random, sqlite3, sys
random.seed(7)
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA page_size=4096")
db.execute("""CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, email TEXT, address TEXT,
              status TEXT, amount REAL, created TEXT, note TEXT)""")
firsts = ["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Karin", "Liam",
          "Maria", "Noah", "Olga", "Paul", "Rosa", "Sven", "Tara", "Ugo", "Vera", "Willem", "Yara", "Zoe"]
lasts = ["Schmidt", "Martin", "Rossi", "Novak", "Jansen", "Silva", "Dubois", "Murphy", "Nielsen", "Kowalski",
         "Garcia", "Meyer", "Bernard", "Costa", "Horvat", "Lindqvist", "Weber", "Moreau", "Fischer", "Russo"]
streets = ["Main Street", "Oak Avenue", "Elm Road", "Harbour Way", "Station Road", "High Street", "Mill Lane", "Park Avenue"]
cities = ["Lyon", "Porto", "Leeds", "Graz", "Turku", "Gent", "Cork", "Bern"]
status = ["new", "paid", "shipped", "delivered", "returned"]
notes = ["", "", "leave at the door", "call before delivery", "gift wrap please", "fragile", "deliver on weekdays only"]
rows = []
for i in range(200000):
    first, last = random.choice(firsts), random.choice(lasts)
    rows.append((i, f"{first} {last}", f"{first.lower()}.{last.lower()}{random.randint(1, 99)}@example.com",
                 f"{random.randint(1, 200)} {random.choice(streets)}, {random.choice(cities)}",
                 random.choice(status), round(random.uniform(5, 900), 2),
                 f"2026-{random.randint(1, 12):02d}-{random.randint(1, 28):02d} {random.randint(0, 23):02d}:{random.randint(0, 59):02d}",
                 random.choice(notes)))
db.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?,?,?)", rows)
db.execute("CREATE INDEX orders_customer ON orders(customer)")
db.commit()
db.close()
PY
