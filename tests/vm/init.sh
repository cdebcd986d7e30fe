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
NAME="insmod again"; ok insmod /cm.ko
i=0; while [ ! -c /dev/cm0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
NAME="/dev/cm0 after reload"; ok test -c /dev/cm0
NAME="rmmod again"; ok rmmod cm
# no warnings, oopses or BUGs from the kernel while we ran
if dmesg | grep -E 'WARNING:|BUG:|Oops|Call Trace|general protection' >/tmp/bad; then
    sed 's/^/DMESG /' /tmp/bad; echo "FAIL guest dmesg clean"
else
    echo "PASS guest dmesg clean"
fi
echo "VM: done"
poweroff -f
