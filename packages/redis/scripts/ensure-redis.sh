#!/usr/bin/env bash
# Makes sure `redis-server` is installed (the @tollgate/redis tests start their own on loopback) and
# prints its version. Installs Debian's `redis-server` package with apt-get when it is missing: works as
# root, or through sudo when it is available. Safe to run repeatedly.
#
#   packages/redis/scripts/ensure-redis.sh
#
# Set REDIS_SERVER_BIN to use a redis-server that is not on PATH (the tests honour it too).
set -euo pipefail

bin="${REDIS_SERVER_BIN:-redis-server}"

if ! command -v "$bin" >/dev/null 2>&1; then
  echo "redis-server not found; installing it with apt-get" >&2
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: apt-get is not available; install redis-server (>= 6.2) another way" >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    sudo=""
  elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo -n"
  else
    echo "error: installing redis-server needs root (or sudo)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  # The package starts a system-wide service on port 6379 where an init system exists; the tests do
  # not use it (each starts its own server on a free port), so it is left as the package set it up.
fi

if ! command -v "$bin" >/dev/null 2>&1; then
  echo "error: redis-server is still not available after installing it" >&2
  exit 1
fi

version="$("$bin" --version)"
echo "$version"

# The scripts use ZADD ... GT (Redis 6.2+).
number="$(printf '%s\n' "$version" | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')"
major="${number%%.*}"
rest="${number#*.}"
minor="${rest%%.*}"
if [ -n "$major" ] && { [ "$major" -lt 6 ] || { [ "$major" -eq 6 ] && [ "${minor:-0}" -lt 2 ]; }; }; then
  echo "error: @tollgate/redis needs Redis 6.2 or later, found $number" >&2
  exit 1
fi
