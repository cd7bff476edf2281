#!/bin/sh
# udhcpc event script used by banger-first-boot on images whose only DHCP
# client is busybox udhcpc (busybox ships no default script in many images).
# udhcpc runs it as `udhcpc.sh <event>` with the lease in the environment:
# interface, ip, subnet, mask, router, dns.
# shellcheck disable=SC2154 # interface and ip come from udhcpc

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
set -f

# Prefix length from $mask (newer busybox) or the dotted $subnet.
prefix() {
  if [ -n "${mask:-}" ]; then
    printf '%s' "$mask"
    return
  fi
  bits=0
  old_ifs=$IFS
  IFS=.
  # shellcheck disable=SC2086 # splitting on dots is the point
  set -- ${subnet:-255.255.255.0}
  IFS=$old_ifs
  for octet in "$@"; do
    case $octet in
      255) bits=$((bits + 8)) ;;
      254) bits=$((bits + 7)) ;;
      252) bits=$((bits + 6)) ;;
      248) bits=$((bits + 5)) ;;
      240) bits=$((bits + 4)) ;;
      224) bits=$((bits + 3)) ;;
      192) bits=$((bits + 2)) ;;
      128) bits=$((bits + 1)) ;;
    esac
  done
  printf '%s' "$bits"
}

deconfig() {
  if command -v ip >/dev/null 2>&1; then
    ip link set dev "$interface" up
    ip addr flush dev "$interface"
  else
    ifconfig "$interface" 0.0.0.0 up
  fi
}

bound() {
  if command -v ip >/dev/null 2>&1; then
    # A renewal of the same address must not drop it, even for a moment.
    if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/$(prefix) "; then
      ip addr flush dev "$interface"
      ip addr add "$ip/$(prefix)" dev "$interface"
    fi
    for gateway in ${router:-}; do
      ip route replace default via "$gateway" dev "$interface" && break
    done
  else
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
    for gateway in ${router:-}; do
      route add default gw "$gateway" "$interface" && break
    done
  fi
  if [ -n "${dns:-}" ] && [ ! -L /etc/resolv.conf ]; then
    for server in $dns; do
      printf 'nameserver %s\n' "$server"
    done >/etc/resolv.conf.banger && mv /etc/resolv.conf.banger /etc/resolv.conf
  fi
}

case ${1:-} in
  deconfig) deconfig ;;
  bound | renew) bound ;;
esac
exit 0
