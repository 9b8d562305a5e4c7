# Provisioning for the tests, sourced by `./test` (the README's test command) and `.ci/run`:
# what the tests talk to, installed from Debian's packages when missing and started when
# stopped. Redis on 127.0.0.1:6379; PostgreSQL on 127.0.0.1:5432 with trust auth from
# 127.0.0.1 and a database `test`; faketime; Chromium and ChromeDriver.

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

echo "== backends: Redis"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping

# The clock-skew test runs a second server under libfaketime, ten minutes ahead.
command -v faketime >/dev/null 2>&1 || apt_install faketime
faketime -f "+10m" date

# The live page's browser test drives headless Chromium through ChromeDriver.
command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 || apt_install chromium chromium-driver

echo "== backends: PostgreSQL"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
command -v pg_isready >/dev/null 2>&1 || apt_install postgresql
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start \
      || as_root service postgresql start
  else
    as_root service postgresql start
  fi
  for _ in $(seq 100); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
fi
pg_isready -h 127.0.0.1 -p 5432
# Trust auth on 127.0.0.1 and the `test` database, as the tests expect (a fresh install asks
# for a password over TCP: trust is added for the loopback addresses only).
if ! psql -h 127.0.0.1 -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then
  hba=$(as_root su postgres -c "psql -Atc 'show hba_file'")
  as_root sed -i -e '1i host all all 127.0.0.1/32 trust' -e '1i host all all ::1/128 trust' "$hba"
  as_root su postgres -c "psql -qAtc 'select pg_reload_conf()'" >/dev/null
fi
if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
  as_root su postgres -c "psql -qc 'create database test'" >/dev/null 2>&1 || true
fi
psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null

