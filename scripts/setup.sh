#!/usr/bin/env bash
# Installs and starts what the test suite needs on a Debian machine: real promtool, the real
# cgi-fcgi client, and the databases if this machine has them but they are stopped.
# Idempotent and quick when everything is already there. Needs root (or sudo) for apt.
set -euo pipefail

# Debian packages the tests use, with the command that proves each is installed.
declare -A PACKAGES=(
  [prometheus]=promtool      # promtool check metrics / rules
  [libfcgi-bin]=cgi-fcgi     # a real FastCGI client
  [apache2]=apache2ctl       # tests/apache.rs and the demo: a real Apache
  [apache2-utils]=htpasswd   # basic-auth password files
  [libapache2-mod-fcgid]=/usr/lib/apache2/modules/mod_fcgid.so  # mod_fcgid (a file, not a command)
  [nginx]=/usr/sbin/nginx    # tests/nginx.rs: the shipped snippet in a real nginx (sbin: not on a user PATH)
  [systemd]=systemd-socket-activate  # tests/nginx.rs: socket activation without systemd running
  [redis-server]=redis-server  # tests/cache.rs: Cache::Redis INFO (a database of its own)
  [redis-tools]=redis-cli      # tests/cache.rs: filling and emptying that database
  [python3-matplotlib]=/usr/lib/python3/dist-packages/matplotlib  # tests/dashboards.rs: panel PNGs
  [chromium]=chromium          # tests/browser.rs: the admin page in real headless Chromium
  [fonts-dejavu-core]=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf  # text in its screenshots
)

SUDO=""
# A command on PATH (or in /usr/sbin, where apache2ctl lives), or an absolute file path.
present() {
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] ;;
  esac
}
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for pkg in "${!PACKAGES[@]}"; do
  present "${PACKAGES[$pkg]}" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for pkg in "${!PACKAGES[@]}"; do
  present "${PACKAGES[$pkg]}" || { echo "setup: ${PACKAGES[$pkg]} still missing after installing $pkg" >&2; exit 1; }
done

# tests/packaging.rs builds the Debian package with cargo-deb (a few minutes, once per machine).
if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "setup: installing cargo-deb"
  cargo install --quiet --locked cargo-deb --version 3.8.0
fi

# tests/browser.rs drives that Chromium with playwright-core (npm; pinned by
# tests/browser/package-lock.json; it downloads no browser of its own). Needs Node.js >= 20.
browser_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/browser"
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing nodejs npm"
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ ! -f "$browser_dir/node_modules/playwright-core/package.json" ] \
   || [ "$browser_dir/package-lock.json" -nt "$browser_dir/node_modules/.package-lock.json" ]; then
  echo "setup: npm ci in tests/browser"
  (cd "$browser_dir" && npm ci --no-audit --no-fund --silent)
fi

# Databases: start them if installed and not answering (later test suites use them).
if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
  for v in /etc/postgresql/*; do
    [ -d "$v" ] && $SUDO pg_ctlcluster --skip-systemctl-redirect "$(basename "$v")" main start || true
  done
fi
if [ -x /usr/sbin/mariadbd ] && ! mysqladmin ping -h 127.0.0.1 --silent 2>/dev/null; then
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 >/dev/null || true
fi
# cargo-fuzz for scripts/fuzz-ci.sh (a few minutes to build, once).
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz"
  cargo install --quiet --locked cargo-fuzz --version 0.13.2
fi
echo "setup: ok ($(promtool --version 2>&1 | head -1))"
