#!/bin/sh
# banger first-boot program, run by the image's init system on every boot.
#
# Usage: banger-first-boot <systemd|sysvinit|openrc|busybox>
#
# Every boot: bring up the first virtio NIC (DHCP, or the static address from
# `ip=` on the kernel command line) and set the hostname (`banger.hostname=`,
# else the hostname field of `ip=`, else /etc/hostname).
# First boot only (until the marker exists): make sure sshd is installed,
# replace the host keys baked into the image, let root log in with a key and
# enable sshd. A failure is logged to the console and to the log file, the
# marker is not written (so the next boot retries) and the boot goes on.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

INIT=${1:-unknown}
LOG=/var/log/banger-first-boot.log
STATE_DIR=/var/lib/banger
MARKER=$STATE_DIR/first-boot.done
LIB_DIR=/usr/local/lib/banger
NIC_WAIT=30
LEASE_WAIT=30
failed=0

log() {
  line="banger-first-boot: $*"
  printf '%s %s\n' "$(date '+%Y-%m-%dT%H:%M:%S' 2>/dev/null)" "$line" >>"$LOG" 2>/dev/null
  if [ -w /dev/console ]; then
    printf '%s\n' "$line" >/dev/console 2>/dev/null
  fi
}

fail() {
  failed=1
  log "ERROR: $*"
}

have() {
  command -v "$1" >/dev/null 2>&1
}

# Runs a command, appending its output to the log file.
run() {
  "$@" >>"$LOG" 2>&1
}

# --- kernel command line -------------------------------------------------------

CMDLINE=

# Prints the value of the last `key=value` word on the kernel command line.
cmdline_value() {
  found=
  set -f
  for word in $CMDLINE; do
    case $word in
      "$1="*) found=${word#*=} ;;
    esac
  done
  set +f
  printf '%s' "$found"
}

# Dotted netmask or prefix length to prefix length.
mask_to_prefix() {
  case $1 in
    '') printf '24'; return ;;
    *.*) ;;
    *) printf '%s' "$1"; return ;;
  esac
  bits=0
  old_ifs=$IFS
  IFS=.
  set -f
  # shellcheck disable=SC2086 # splitting on dots is the point
  set -- $1
  set +f
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

# Parses `ip=` (the kernel's nfsroot syntax:
# client:server:gateway:netmask:hostname:device:autoconf:dns0:dns1) into
# net_mode (dhcp|static|off) and the ip_* variables.
parse_ip_arg() {
  net_mode=dhcp
  ip_client='' ip_gw='' ip_prefix='' ip_host='' ip_dev='' ip_dns0='' ip_dns1=''
  arg=$(cmdline_value ip)
  case $arg in
    '' | dhcp | on | any | both | bootp | rarp) return ;;
    off | none) net_mode=off; return ;;
  esac
  old_ifs=$IFS
  IFS=:
  set -f
  # shellcheck disable=SC2086 # splitting on colons is the point
  set -- $arg
  set +f
  IFS=$old_ifs
  ip_client=${1:-}
  ip_gw=${3:-}
  mask=${4:-}
  ip_host=${5:-}
  ip_dev=${6:-}
  autoconf=${7:-}
  ip_dns0=${8:-}
  ip_dns1=${9:-}
  case $ip_client in
    */*) mask=${ip_client#*/}; ip_client=${ip_client%%/*} ;;
  esac
  ip_prefix=$(mask_to_prefix "$mask")
  case $autoconf in
    dhcp | on | any | both | bootp | dhcp6 | auto6) net_mode=dhcp ;;
    *) if [ -n "$ip_client" ]; then net_mode=static; fi ;;
  esac
}

# --- network -------------------------------------------------------------------

# Prints the name of the virtio NIC with the lowest ifindex.
first_virtio_nic() {
  best='' best_index=''
  for dev in /sys/class/net/*; do
    [ -e "$dev/device/driver" ] || continue
    driver=$(readlink "$dev/device/driver" 2>/dev/null)
    case $driver in
      */virtio_net) ;;
      *) continue ;;
    esac
    index=$(cat "$dev/ifindex" 2>/dev/null)
    [ -n "$index" ] || continue
    if [ -z "$best" ] || [ "$index" -lt "$best_index" ]; then
      best=${dev##*/}
      best_index=$index
    fi
  done
  printf '%s' "$best"
}

wait_for_nic() {
  waited=0
  while :; do
    if [ -n "$ip_dev" ]; then
      if [ -e "/sys/class/net/$ip_dev" ]; then
        nic=$ip_dev
        return 0
      fi
    else
      nic=$(first_virtio_nic)
      [ -z "$nic" ] || return 0
    fi
    [ "$waited" -lt "$NIC_WAIT" ] || return 1
    sleep 1
    waited=$((waited + 1))
  done
}

networkd_binary() {
  for candidate in /lib/systemd/systemd-networkd /usr/lib/systemd/systemd-networkd; do
    if [ -x "$candidate" ]; then
      return 0
    fi
  done
  return 1
}

write_resolv_conf() {
  [ $# -gt 0 ] || return 0
  # A resolver that manages the file (systemd-resolved, resolvconf) keeps it.
  if [ -L /etc/resolv.conf ]; then
    target=$(readlink /etc/resolv.conf)
    case $target in
      *systemd/resolve/* | *resolvconf/*) return 0 ;;
    esac
    rm -f /etc/resolv.conf
  fi
  {
    for server in "$@"; do
      [ -z "$server" ] || printf 'nameserver %s\n' "$server"
    done
  } >/etc/resolv.conf.banger && mv /etc/resolv.conf.banger /etc/resolv.conf
}

network_with_networkd() {
  mkdir -p /run/systemd/network
  {
    printf '# Written by banger-first-boot at every boot.\n'
    printf '[Match]\nName=%s\n\n[Network]\n' "$nic"
    if [ "$net_mode" = static ]; then
      printf 'Address=%s/%s\n' "$ip_client" "$ip_prefix"
      [ -z "$ip_gw" ] || printf 'Gateway=%s\n' "$ip_gw"
      for server in $ip_dns0 $ip_dns1; do printf 'DNS=%s\n' "$server"; done
    else
      printf 'DHCP=ipv4\n\n[DHCPv4]\nUseHostname=no\n'
    fi
  } >/run/systemd/network/10-banger.network
  if ! run systemctl restart --no-block systemd-networkd.service; then
    fail "could not start systemd-networkd"
    return 1
  fi
  if [ "$net_mode" = static ]; then
    write_resolv_conf "$ip_dns0" "$ip_dns1"
    return 0
  fi
  # Without systemd-resolved nobody writes resolv.conf: take DNS from the lease.
  index=$(cat "/sys/class/net/$nic/ifindex")
  lease=/run/systemd/netif/leases/$index
  waited=0
  while [ ! -s "$lease" ]; do
    if [ "$waited" -ge "$LEASE_WAIT" ]; then
      fail "no DHCP lease on $nic after ${LEASE_WAIT}s"
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  address=$(sed -n 's/^ADDRESS=//p' "$lease")
  log "DHCP lease on $nic: $address"
  # shellcheck disable=SC2046 # one word per server
  write_resolv_conf $(sed -n 's/^DNS=//p' "$lease")
}

network_static() {
  if have ip; then
    run ip link set dev "$nic" up &&
      run ip addr flush dev "$nic" &&
      run ip addr add "$ip_client/$ip_prefix" dev "$nic" || return 1
    if [ -n "$ip_gw" ]; then
      run ip route replace default via "$ip_gw" dev "$nic" || return 1
    fi
  elif have ifconfig; then
    run ifconfig "$nic" "$ip_client/$ip_prefix" up || return 1
    if [ -n "$ip_gw" ]; then
      run route add default gw "$ip_gw" "$nic" || return 1
    fi
  else
    fail "neither ip nor ifconfig: cannot configure $nic"
    return 1
  fi
  write_resolv_conf "$ip_dns0" "$ip_dns1"
}

network_dhcp() {
  if have ip; then
    run ip link set dev "$nic" up
  elif have ifconfig; then
    run ifconfig "$nic" up
  fi
  if have dhclient; then
    run dhclient -4 -1 "$nic"
  elif have udhcpc; then
    run udhcpc -i "$nic" -s "$LIB_DIR/udhcpc.sh" -t 10 -T 2 -A 5 -b -p "/run/banger-udhcpc.$nic.pid"
  elif have busybox && busybox --list 2>/dev/null | grep -qx udhcpc; then
    run busybox udhcpc -i "$nic" -s "$LIB_DIR/udhcpc.sh" -t 10 -T 2 -A 5 -b -p "/run/banger-udhcpc.$nic.pid"
  elif have dhcpcd; then
    run dhcpcd -4 "$nic"
  else
    fail "no DHCP client (systemd-networkd, dhclient, udhcpc, dhcpcd) for $nic; pass ip=<address>::<gateway>:<netmask>::: on the kernel command line"
    return 1
  fi
}

log_address() {
  address=''
  if have ip; then
    address=$(ip -4 -o addr show dev "$nic" 2>/dev/null | sed -n 's/.* inet \([0-9.\/]*\).*/\1/p')
  elif have ifconfig; then
    address=$(ifconfig "$nic" 2>/dev/null | sed -n 's/.*inet addr:\([0-9.]*\).*/\1/p')
  fi
  log "$nic address: ${address:-none yet}"
}

setup_network() {
  parse_ip_arg
  if [ "$net_mode" = off ]; then
    log "ip=off: network left alone"
    return 0
  fi
  if ! wait_for_nic; then
    fail "no virtio network interface after ${NIC_WAIT}s"
    return 1
  fi
  log "configuring $nic ($net_mode)"
  if [ "$INIT" = systemd ] && networkd_binary; then
    network_with_networkd || fail "network configuration of $nic failed"
    return
  fi
  if [ "$net_mode" = static ]; then
    network_static
  else
    network_dhcp
  fi || fail "network configuration of $nic failed"
  log_address
}

# --- hostname ------------------------------------------------------------------

setup_hostname() {
  name=$(cmdline_value banger.hostname)
  [ -n "$name" ] || name=$ip_host
  if [ -z "$name" ] && [ -s /etc/hostname ]; then
    name=$(head -n 1 /etc/hostname)
  fi
  [ -n "$name" ] || return 0
  if [ "$(cat /etc/hostname 2>/dev/null)" != "$name" ]; then
    printf '%s\n' "$name" >/etc/hostname || fail "could not write /etc/hostname"
  fi
  if ! printf '%s' "$name" 2>/dev/null >/proc/sys/kernel/hostname; then
    have hostname && run hostname "$name"
  fi
  if [ ! -e /etc/hosts ]; then
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >/etc/hosts
  fi
  # Drop the line an earlier boot added for another name, then add one if none matches.
  sed -i '/[[:space:]]# banger$/d' /etc/hosts
  if ! grep -qE "[[:space:]]$name([[:space:]]|\$)" /etc/hosts; then
    printf '127.0.1.1\t%s # banger\n' "$name" >>/etc/hosts
  fi
  log "hostname $name"
}

# --- sshd ----------------------------------------------------------------------

sshd_binary() {
  for candidate in /usr/sbin/sshd /usr/local/sbin/sshd /sbin/sshd; do
    if [ -x "$candidate" ]; then
      printf '%s' "$candidate"
      return 0
    fi
  done
  return 1
}

install_sshd() {
  log "sshd is missing: installing it"
  if have apt-get; then
    # Keep the package's maintainer scripts from starting sshd before the
    # host keys are replaced (and from waiting on this very boot job).
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive
    export DEBIAN_FRONTEND
    run apt-get update &&
      run apt-get install -y --no-install-recommends openssh-server
    status=$?
    rm -f /usr/sbin/policy-rc.d
    return $status
  elif have apk; then
    run apk add --no-cache openssh-server
  elif have dnf; then
    run dnf install -y openssh-server
  elif have yum; then
    run yum install -y openssh-server
  elif have zypper; then
    run zypper --non-interactive install openssh-server
  elif have pacman; then
    run pacman -Sy --noconfirm openssh
  else
    log "no known package manager (apt-get, apk, dnf, yum, zypper, pacman)"
    return 1
  fi
}

regenerate_host_keys() {
  if ! have ssh-keygen; then
    fail "ssh-keygen is missing: cannot generate host keys"
    return 1
  fi
  # Keys baked into the image would be shared by every VM made from it.
  rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub
  if run ssh-keygen -A; then
    log "generated new SSH host keys"
  else
    fail "ssh-keygen -A failed"
    return 1
  fi
}

allow_root_key_login() {
  # OpenSSH refuses a locked account ('!' password) without PAM, even for keys;
  # '*' still means no password login.
  if [ -f /etc/shadow ] && grep -q '^root:!' /etc/shadow; then
    sed -i 's/^root:![^:]*:/root:*:/' /etc/shadow || fail "could not unlock root in /etc/shadow"
  fi
  if [ -d /etc/ssh/sshd_config.d ] && grep -qi '^[[:space:]]*Include[[:space:]].*sshd_config\.d' /etc/ssh/sshd_config 2>/dev/null; then
    printf '# Written by banger-first-boot.\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n' \
      >/etc/ssh/sshd_config.d/00-banger.conf
  fi
}

systemd_sshd_unit() {
  for unit in ssh sshd; do
    for dir in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
      if [ -f "$dir/$unit.service" ] && [ ! -L "$dir/$unit.service" ]; then
        printf '%s.service' "$unit"
        return 0
      fi
    done
  done
  return 1
}

sysv_sshd_script() {
  for name in ssh sshd; do
    if [ -x "/etc/init.d/$name" ]; then
      printf '%s' "$name"
      return 0
    fi
  done
  return 1
}

enable_sshd() {
  case $INIT in
    systemd)
      unit=$(systemd_sshd_unit) || { fail "no ssh.service or sshd.service unit"; return 1; }
      if ! systemctl is-enabled --quiet "$unit" 2>/dev/null; then
        run systemctl enable "$unit" || { fail "systemctl enable $unit failed"; return 1; }
      fi
      # Queued behind this job (the unit orders itself before sshd).
      run systemctl start --no-block "$unit"
      ;;
    openrc)
      run rc-update add sshd default || { fail "rc-update add sshd failed"; return 1; }
      ;;
    sysvinit)
      script=$(sysv_sshd_script) || { fail "no /etc/init.d/ssh or sshd"; return 1; }
      if have update-rc.d; then
        run update-rc.d "$script" defaults && run update-rc.d "$script" enable
      elif have chkconfig; then
        run chkconfig "$script" on
      fi
      ;;
  esac
  return 0
}

# Started here every boot when the init system would not start it.
start_sshd() {
  case $INIT in
    openrc)
      run rc-service sshd status || run rc-service sshd start || fail "rc-service sshd start failed"
      ;;
    busybox | unknown)
      binary=$(sshd_binary) || return 0
      mkdir -p /run/sshd /var/empty && chmod 0755 /run/sshd
      run "$binary" || fail "$binary failed to start"
      ;;
  esac
}

first_boot() {
  if ! sshd_binary >/dev/null; then
    install_sshd || fail "could not install sshd"
  fi
  if sshd_binary >/dev/null; then
    regenerate_host_keys
    allow_root_key_login
    enable_sshd
  else
    fail "sshd is not installed"
  fi
  if [ "$failed" = 0 ]; then
    mkdir -p "$STATE_DIR" && date >"$MARKER" && log "first boot done"
  else
    log "first boot incomplete; it will be retried at the next boot (see $LOG)"
  fi
}

# busybox init without an rcS mounts nothing; everything below needs /proc and /sys.
mount_kernel_filesystems() {
  [ -e /proc/cmdline ] || mount -t proc proc /proc 2>/dev/null
  [ -d /sys/class ] || mount -t sysfs sysfs /sys 2>/dev/null
  [ -d /run ] || mkdir -p /run
}

main() {
  mount_kernel_filesystems
  mkdir -p "${LOG%/*}" 2>/dev/null
  CMDLINE=$(cat /proc/cmdline 2>/dev/null)
  log "starting ($INIT)"
  setup_network
  setup_hostname
  if [ -e "$MARKER" ]; then
    log "marker $MARKER present: first-boot work already done"
  else
    first_boot
  fi
  start_sshd
  return "$failed"
}

# Tests source this file with BANGER_FIRST_BOOT_NO_MAIN=1 to call its functions.
[ "${BANGER_FIRST_BOOT_NO_MAIN:-}" = 1 ] || main
