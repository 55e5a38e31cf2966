#!/bin/bash
# A throwaway single-node Ceph with radosgw on 127.0.0.1:7480, for scripts/bench_upload.py.
#
#   apt-get install -y radosgw ceph-mon ceph-osd ceph-common     # Debian 12: Ceph 16 (pacific)
#   scripts/radosgw_local.sh start     # builds it under $RGW_DIR (default /tmp/codex-radosgw)
#   python scripts/bench_upload.py --server external              # endpoint and keys below
#   scripts/radosgw_local.sh stop      # stops it and deletes everything under $RGW_DIR
#
# One monitor, one OSD (BlueStore on a sparse file: a real disk-backed store; STORE=memstore keeps
# objects in RAM instead), pool size 1, cephx, no manager, debug logging off. S3 user: access key
# "benchkey", secret "benchsecret". Never point this at a directory holding anything you need.
set -euo pipefail
D=${RGW_DIR:-/tmp/codex-radosgw}
C=$D/ceph.conf
STORE=${STORE:-bluestore}
MON_PORT=${MON_PORT:-3310}
RGW_ADDR=${RGW_ADDR:-127.0.0.1:7480}
ACCESS=benchkey
SECRET=benchsecret

pid_of() {  # pid of this cluster's daemon NAME (from its pid file, checked against our config)
  local f=$D/run/$1.pid p
  [ -f "$f" ] && p=$(cat "$f") && [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' <"/proc/$p/cmdline" | grep -q -- "$C" \
    && echo "$p"
}

stop() {
  local n p
  for n in client.rgw osd.0 mon.a; do
    if p=$(pid_of $n); then
      kill "$p" 2>/dev/null || true
      for _ in $(seq 1 50); do [ -d "/proc/$p" ] || break; sleep 0.2; done
      kill -9 "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$D"
}

start() {
  if pid_of client.rgw >/dev/null; then
    echo "radosgw already running: http://$RGW_ADDR"
    return
  fi
  stop
  mkdir -p $D/mon/a $D/osd/0 $D/run $D/log $D/rgwdata
  local store_conf
  if [ "$STORE" = memstore ]; then
    store_conf="osd objectstore = memstore
memstore device bytes = 12884901888"
  else
    store_conf="osd objectstore = bluestore
bluestore block path = $D/block.img
bluestore block create = true
bluestore block size = 42949672960"
  fi
  local fsid
  fsid=$(uuidgen)
  cat >$C <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$MON_PORT
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $D/keyring
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
ms bind ipv6 = false
public addr = 127.0.0.1
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 16
osd pool default pgp num = 16
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1
debug ms = 0/0
debug mon = 0/0
debug osd = 0/0
debug bluestore = 0/0
debug bluefs = 0/0
debug bdev = 0/0
debug rocksdb = 0/0
debug memstore = 0/0
debug rgw = 0/0
debug objecter = 0/0
debug rados = 0/0
debug auth = 0/0
debug monc = 0/0
debug paxos = 0/0
[mon.a]
mon data = $D/mon/a
[osd.0]
osd data = $D/osd/0
$store_conf
[client.rgw]
rgw frontends = beast endpoint=$RGW_ADDR
rgw data = $D/rgwdata
rgw thread pool size = 128
rgw enable usage log = false
rgw enable ops log = false
# Benchmarks delete what they upload; reclaim it within a minute, not radosgw's default two hours,
# or repeated runs fill the OSD and radosgw stalls every write.
rgw gc obj min wait = 60
rgw gc processor period = 60
CONF
  ceph-authtool --create-keyring $D/keyring --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool $D/keyring --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool $D/keyring --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' >/dev/null
  ceph-authtool $D/keyring --gen-key -n client.rgw --cap mon 'allow rw' --cap osd 'allow rwx' >/dev/null
  monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$fsid" $D/monmap >/dev/null
  ceph-mon -c $C --mkfs -i a --monmap $D/monmap --keyring $D/keyring
  ceph-mon -c $C -i a
  timeout 60 ceph -c $C mon stat >/dev/null
  local osd_uuid
  osd_uuid=$(uuidgen)
  ceph -c $C osd new "$osd_uuid" 0 >/dev/null
  ceph-osd -c $C -i 0 --mkfs --osd-uuid "$osd_uuid" >$D/log/osd-mkfs.out 2>&1
  ceph-osd -c $C -i 0 2>>$D/log/osd-start.out
  for _ in $(seq 1 60); do ceph -c $C osd stat 2>/dev/null | grep -q '1 up' && break; sleep 1; done
  # Create radosgw's bucket pools now: created on the first upload they stall it for seconds.
  for pool in default.rgw.buckets.index:16 default.rgw.buckets.data:32 default.rgw.buckets.non-ec:16; do
    ceph -c $C osd pool create "${pool%%:*}" "${pool##*:}" >/dev/null 2>&1
    ceph -c $C osd pool application enable "${pool%%:*}" rgw >/dev/null 2>&1
    timeout 60 rados -c $C -p "${pool%%:*}" put warmup /dev/null && rados -c $C -p "${pool%%:*}" rm warmup
  done
  radosgw -c $C -n client.rgw
  for _ in $(seq 1 120); do curl -s -o /dev/null --max-time 2 "http://$RGW_ADDR/" && break; sleep 1; done
  radosgw-admin -c $C -n client.admin user create --uid bench --display-name bench \
    --access-key $ACCESS --secret $SECRET >/dev/null
  echo "radosgw ($STORE) up: http://$RGW_ADDR  access key $ACCESS  secret $SECRET  (data in $D)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
