// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * One application's life on a freshly loaded driver (tests/vm/init.sh loops insmod, this, rmmod 50 times):
 * open /dev/cmN, CM_IOC_INFO, mmap the bus, attach a queue pair (its header says ATTACHED to the memory
 * peer), CM_IOC_WAIT with no timeout (ETIMEDOUT: no events), detach it; attach another through a second
 * file and exit without detaching (the driver releases it on close); then the driver's counters must show
 * exactly that. Silent on success (exit 0); one "why" line on stderr and exit 1 otherwise.
 *
 *   cm_reload /dev/cm0
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cm/bus_abi.h>
#include <linux/cm.h>

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); return 1; } while (0)

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/dev/cm0";
	struct cm_info info;
	struct cm_attach a;
	struct cm_detach d;
	struct cm_wait w;
	struct cm_counters c;
	volatile struct cm_bus_qp *hdr;
	uint8_t *base;
	int fd, fd2;
	uint32_t qp;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		FAIL("open %s: %s", path, strerror(errno));
	memset(&info, 0, sizeof(info));
	if (ioctl(fd, CM_IOC_INFO, &info) != 0)
		FAIL("CM_IOC_INFO: %s", strerror(errno));
	if (info.qp_count == 0 || info.qp_host < 2 || info.map_size < CM_BUS_CTRL_SIZE)
		FAIL("CM_IOC_INFO: qp_count %u qp_host %u map_size %llu", info.qp_count, info.qp_host,
		     (unsigned long long)info.map_size);
	base = mmap(NULL, info.map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		FAIL("mmap: %s", strerror(errno));

	memset(&a, 0, sizeof(a));
	a.count = 1;
	if (ioctl(fd, CM_IOC_ATTACH, &a) != 0 || a.attached != 1)
		FAIL("CM_IOC_ATTACH: %s (attached %u)", strerror(errno), a.attached);
	qp = a.qps[0];
	{
		const struct cm_bus_ctrl *ctrl = (const struct cm_bus_ctrl *)base;

		hdr = (volatile struct cm_bus_qp *)(base + ctrl->qp_offset + (uint64_t)qp * ctrl->qp_stride);
	}
	if (hdr->state != CM_BUS_QP_ATTACHED || hdr->owner_peer != CM_BUS_MEMORY_PEER || hdr->host_pid != (uint32_t)getpid())
		FAIL("queue pair %u: state %u owner %#x host_pid %u (pid %d)", qp, hdr->state, hdr->owner_peer,
		     hdr->host_pid, getpid());
	memset(&w, 0, sizeof(w));
	w.qp = qp;
	if (ioctl(fd, CM_IOC_WAIT, &w) == 0 || errno != ETIMEDOUT)
		FAIL("CM_IOC_WAIT (no timeout, no events): %s, want ETIMEDOUT", strerror(errno));
	d.qp = qp;
	d.flags = 0;
	if (ioctl(fd, CM_IOC_DETACH, &d) != 0)
		FAIL("CM_IOC_DETACH: %s", strerror(errno));

	fd2 = open(path, O_RDWR | O_CLOEXEC);
	if (fd2 < 0)
		FAIL("open (second): %s", strerror(errno));
	memset(&a, 0, sizeof(a));
	a.count = 1;
	if (ioctl(fd2, CM_IOC_ATTACH, &a) != 0 || a.attached != 1)
		FAIL("CM_IOC_ATTACH (second file): %s", strerror(errno));
	close(fd2);  /* released by the driver */

	if (ioctl(fd, CM_IOC_COUNTERS, &c) != 0)
		FAIL("CM_IOC_COUNTERS: %s", strerror(errno));
	if (c.opens != 2 || c.mmaps != 1 || c.attaches != 2 || c.detaches != 1 || c.released != 1 || c.bad_ctrl ||
	    c.bad_qp || c.bad_ioctls || c.bus_refused)
		FAIL("counters: opens %llu mmaps %llu attaches %llu detaches %llu released %llu bad_ctrl %llu bad_qp %llu "
		     "bad_ioctls %llu bus_refused %llu",
		     (unsigned long long)c.opens, (unsigned long long)c.mmaps, (unsigned long long)c.attaches,
		     (unsigned long long)c.detaches, (unsigned long long)c.released, (unsigned long long)c.bad_ctrl,
		     (unsigned long long)c.bad_qp, (unsigned long long)c.bad_ioctls, (unsigned long long)c.bus_refused);
	munmap(base, info.map_size);
	close(fd);
	return 0;
}
