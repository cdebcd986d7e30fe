#!/bin/busybox sh
# /init of the test VM (tests/vm/run.sh): prints PASS/FAIL lines on the console, then powers off.
# cm_expect_fw comes from the kernel command line (the firmware version the host read from the bus file).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "VM: boot $(uname -r)"

ok() { if "$@"; then echo "PASS $NAME"; else echo "FAIL $NAME"; fi; }

dmesg -n 1

# run.sh --httpd: cm-httpd (static, libcm over /dev/cm0) serves the host's clients through the card.
# The host sends commands on ttyS1 (a QEMU pipe): "kill" (SIGKILL the server, start a new one), "done".
if [ "${cm_mode:-}" = httpd ]; then
    NAME="insmod cm.ko (polling every ${cm_poll_us:-200} us)"; ok insmod /cm.ko poll_interval_us=${cm_poll_us:-200}
    i=0; while [ ! -c /dev/cm0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    NAME="/dev/cm0 exists"; ok test -c /dev/cm0
    stty -F /dev/ttyS1 raw -echo 2>/dev/null
    n=0
    start_httpd() {
        n=$((n + 1))
        /cm-httpd --backend cm --device /dev/cm0 --port 80 --body-size 1024 --quiet \
            --ready-file /tmp/ready$n --stats-file /tmp/stats$n 2>/tmp/httpd$n.log &
        pid=$!
        i=0; while [ ! -s /tmp/ready$n ] && [ $i -lt 100 ] && kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
        NAME="cm-httpd $n ready on /dev/cm0"; ok test -s /tmp/ready$n
        [ -s /tmp/ready$n ] || sed 's/^/HTTPD /' /tmp/httpd$n.log
        echo "VM: httpd ready $n"
    }
    start_httpd
    while read -r cmd </dev/ttyS1; do
        case $cmd in
        kill)
            kill -9 $pid; wait $pid 2>/dev/null
            echo "VM: httpd $n killed"
            start_httpd ;;
        done) break ;;
        esac
    done
    kill -TERM $pid; wait $pid; st=$?
    NAME="cm-httpd $n exited cleanly on SIGTERM"; ok test $st -eq 0
    grep -E '^(requests|responses|bytes_out|conns_accepted|errors)' /tmp/stats$n 2>/dev/null | tr '\n' ' ' | sed 's/^/HTTPD stats: /'; echo
    dmesg | grep -E 'cm [0-9a-f:.]+: ' | sed 's/^/DMESG /'
    grep cm0 /proc/interrupts | sed 's/^/INFO /'
    awk '/ cm0$/ { for (i = 2; i < NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print "INFO cm0 interrupts " s + 0 }' /proc/interrupts
    NAME="rmmod cm"; ok rmmod cm
    if dmesg | grep -E 'WARNING:|BUG:|Oops|Call Trace|general protection' >/tmp/bad; then
        sed 's/^/DMESG /' /tmp/bad; echo "FAIL guest dmesg clean"
    else
        echo "PASS guest dmesg clean"
    fi
    echo "VM: done"
    poweroff -f
fi
# run.sh --garbage: the host writes garbage into the bus memory while the driver is bound (cm_garbage.c
# says when on the console and waits for the host's answer on ttyS1).
if [ "${cm_mode:-}" = garbage ]; then
    NAME="insmod cm.ko"; ok insmod /cm.ko
    i=0; while [ ! -c /dev/cm0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    stty -F /dev/ttyS1 raw -echo 2>/dev/null
    /cm_garbage /dev/cm0 /dev/ttyS1; st=$?
    NAME="cm_garbage exited 0"; ok test $st -eq 0
    dmesg | grep -E 'cm [0-9a-f:.]+: ' | sed 's/^/DMESG /'
    NAME="rmmod cm"; ok rmmod cm
    if dmesg | grep -E 'WARNING:|BUG:|Oops|Call Trace|general protection' >/tmp/bad; then
        sed 's/^/DMESG /' /tmp/bad; echo "FAIL guest dmesg clean"
    else
        echo "PASS guest dmesg clean"
    fi
    echo "VM: done"
    poweroff -f
fi
NAME="two ivshmem devices (1af4:1110): the card and another user"; ok test "$(grep -l 0x1110 /sys/bus/pci/devices/*/device | wc -l)" = 2
NAME="insmod cm.ko"; ok insmod /cm.ko
i=0; while [ ! -c /dev/cm0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
NAME="/dev/cm0 exists"; ok test -c /dev/cm0
NAME="driver bound the card's ivshmem device and only it"; ok test "$(ls -d /sys/bus/pci/drivers/cm/0000:* | wc -l)" = 1
NAME="driver left the other ivshmem user alone"; ok dmesg | grep -q 'no cm bus in BAR2, not binding'
NAME="one /dev/cm device"; ok test "$(ls /dev/cm* | wc -l)" = 1
dmesg | grep -E 'cm [0-9a-f:.]+: ' | sed 's/^/DMESG /'

/cm_selftest /dev/cm0 "${cm_expect_fw:-}"

# Firmware load through the driver (run.sh --fwload: the card booted from a flash; /good.img is a signed
# image of the card's firmware). Refusals first: the host checks that only the last load wrote the flash.
if [ -e /good.img ]; then
    /cm_fwload /dev/cm0 /good.img:corrupt EBADMSG "corrupt payload refused"
    /cm_fwload /dev/cm0 /good.img:truncated EBADMSG "truncated image refused"
    /cm_fwload /dev/cm0 /good.img:wrongarch ENOEXEC "image for another architecture refused"
    /cm_fwload /dev/cm0 zeros:$((32 * 1024 * 1024 + 1)) EFBIG "image larger than a flash slot refused"
    /cm_fwload /dev/cm0 busy:$((24 * 1024 * 1024)) - "one load at a time"
    /cm_fwload /dev/cm0 /good.img 0 "good image written"
    dmesg | grep -E 'cm [0-9a-f:.]+: firmware load' | sed 's/^/DMESG /'
fi

NAME="rmmod cm"; ok rmmod cm
NAME="/dev/cm0 gone after rmmod"; ok test ! -e /dev/cm0
# Unload and reload ${cm_reloads:-50} times, an application attaching each time (cm_reload.c: info, mmap,
# attach, wait, detach, a second file released on close, the driver's counters exact): every load binds,
# the module's reference count is back at 0 before each unload, and the kernel's slab memory stays flat.
slab_kb() { awk '$1 == "Slab:" { print $2 }' /proc/meminfo; }
reload_fail=""
n=0
while [ $n -lt ${cm_reloads:-50} ]; do
    n=$((n + 1))
    insmod /cm.ko || { reload_fail="insmod $n"; break; }
    i=0; while [ ! -c /dev/cm0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    /cm_reload /dev/cm0 2>/tmp/reload.err || { reload_fail="application $n: $(cat /tmp/reload.err)"; rmmod cm; break; }
    [ "$(cat /sys/module/cm/refcnt)" = 0 ] || { reload_fail="refcnt $(cat /sys/module/cm/refcnt) after $n"; rmmod cm; break; }
    rmmod cm || { reload_fail="rmmod $n"; break; }
    [ ! -e /dev/cm0 ] || { reload_fail="/dev/cm0 left after rmmod $n"; break; }
    [ $n -eq 2 ] && slab0=$(slab_kb)   # after the first loads (caches warmed up)
done
slab1=$(slab_kb)
echo "INFO reload: $n loads, slab ${slab0:-?} kB after 2, $slab1 kB after $n"
NAME="unload/reload ${cm_reloads:-50} times with an application attaching each time${reload_fail:+: $reload_fail}"
ok test -z "$reload_fail"
NAME="slab memory flat over the reloads (${slab0:-?} -> $slab1 kB)"; ok test $((slab1 - ${slab0:-0})) -lt 1024
# no warnings, oopses or BUGs from the kernel while we ran
if dmesg | grep -E 'WARNING:|BUG:|Oops|Call Trace|general protection' >/tmp/bad; then
    sed 's/^/DMESG /' /tmp/bad; echo "FAIL guest dmesg clean"
else
    echo "PASS guest dmesg clean"
fi
echo "VM: done"
poweroff -f
