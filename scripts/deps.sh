#!/usr/bin/env bash
# Installs the real servers and tools the tests and benchmarks use, from
# Debian's packages, when they are missing. Safe to run again.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have nginx        || need+=(nginx)
have redis-server || need+=(redis-server)
have wrk          || need+=(wrk)
have goaccess     || need+=(goaccess)
have chromium     || need+=(chromium)
have ip           || need+=(iproute2)
have tc           || need+=(iproute2)
have journalctl   || need+=(systemd)
have systemd-analyze || need+=(systemd)
have redis-sentinel || need+=(redis-sentinel)
have redis-cli    || need+=(redis-tools)
have promtool     || need+=(prometheus)
have chromedriver || need+=(chromium-driver)
# The seed's nginx + Lua bouncer (bench/proxy.sh, bench/sidecar.sh and their
# tests) needs the Lua module, which is a file, not a command.
[ -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || [ -e /usr/share/nginx/modules/ngx_http_lua_module.so ] || need+=(libnginx-mod-http-lua)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
else
  sudo=
fi
echo "deps: installing ${need[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
