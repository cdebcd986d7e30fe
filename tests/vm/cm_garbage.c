// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Garbage in the bus memory from the host side while the driver is bound (tests/vm/run.sh --garbage).
 * The host (run.sh) writes the bytes into the card's bus file; this program, in the guest, tells it when
 * over the console ("VM: garbage STEP ...") and waits for its answer on /dev/ttyS1 (a QEMU pipe):
 *
 *   1. a queue pair attached and working (a NOP answered)       -> "VM: garbage indices QP"
 *   2. the host wrote random ring indices into that queue pair: poll() says EPOLLERR, CM_IOC_WAIT EIO, the
 *      driver counted it (bad_qp, or the card faulted the queue pair); the file is closed (released)
 *                                                               -> "VM: garbage ctrl"
 *   3. the host overwrote the control block's magic, sizes and offsets with random bytes: CM_IOC_ATTACH
 *      EIO, poll() EPOLLERR, counted (bus_refused), CM_IOC_RESET refuses the block (EPROTO) and then mmap
 *      and attach fail with EIO                                 -> "VM: garbage restore"
 *   4. the host put the card's control block back (as the card does when it formats the memory again):
 *      CM_IOC_RESET accepts it, a queue pair attaches and a NOP is answered again.
 *
 * Prints PASS/FAIL lines; exit 0 when all passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cm/bus_abi.h>
#include <linux/cm.h>

static const char *device = "/dev/cm0";
static FILE *ctl;
static int failed;

static void result(int ok, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void result(int ok, const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("%s garbage: %s", ok ? "PASS" : "FAIL", name);
	if (!ok) {
		failed++;
		printf(": ");
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	printf("\n");
	fflush(stdout);
}

/* Tells the host which step we are at and waits for its answer line. */
static void step(const char *what)
{
	char line[64];

	printf("VM: garbage %s\n", what);
	fflush(stdout);
	if (!fgets(line, sizeof(line), ctl)) {
		printf("FAIL garbage: no answer from the host after %s\n", what);
		exit(1);
	}
}

struct qp_map {
	int fd;
	uint8_t *base;
	size_t size;
	uint32_t q;
	struct cm_bus_qp *h;
};

/* Opens the device, maps it, attaches one queue pair. 0 or -errno. */
static int qp_open(struct qp_map *m)
{
	struct cm_info info;
	struct cm_attach a = { .count = 1 };
	const struct cm_bus_ctrl *ctrl;

	memset(m, 0, sizeof(*m));
	m->fd = open(device, O_RDWR | O_CLOEXEC);
	if (m->fd < 0)
		return -errno;
	if (ioctl(m->fd, CM_IOC_INFO, &info) != 0)
		return -errno;
	m->size = info.map_size;
	m->base = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	if (m->base == MAP_FAILED) {
		m->base = NULL;
		return -errno;
	}
	if (ioctl(m->fd, CM_IOC_ATTACH, &a) != 0)
		return -errno;
	m->q = a.qps[0];
	ctrl = (const struct cm_bus_ctrl *)m->base;
	m->h = (struct cm_bus_qp *)(m->base + ctrl->qp_offset + (uint64_t)m->q * ctrl->qp_stride);
	return 0;
}

static void qp_close(struct qp_map *m)
{
	if (m->base)
		munmap(m->base, m->size);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	m->base = NULL;
}

/* A NOP through the queue pair, answered by the card within 5 s: 0, or a reason. */
static const char *qp_nop(struct qp_map *m)
{
	struct cm_bus_qp *h = m->h;
	uint8_t *qpb = (uint8_t *)h;
	uint32_t prod = h->sq_prod, cons = h->eq_cons;
	struct cm_bus_desc *sq = (struct cm_bus_desc *)(qpb + h->sq_offset);
	struct cm_bus_desc *eq = (struct cm_bus_desc *)(qpb + h->eq_offset);
	struct cm_bus_desc d = { .opcode = CM_BUS_SQ_NOP, .slot = CM_BUS_NO_SLOT, .cookie = 0xbadc0de };
	struct cm_wait w = { .qp = m->q, .timeout_ms = 5000 };
	struct cm_bus_desc ev;

	if (h->state != CM_BUS_QP_ATTACHED)
		return "queue pair not attached";
	memcpy(&sq[prod & (h->entries - 1)], &d, sizeof(d));
	__atomic_store_n(&h->sq_prod, prod + 1, __ATOMIC_RELEASE);
	if (ioctl(m->fd, CM_IOC_WAIT, &w) != 0)
		return strerror(errno);
	if (__atomic_load_n(&h->eq_prod, __ATOMIC_ACQUIRE) - cons != 1)
		return "not one event";
	memcpy(&ev, &eq[cons & (h->entries - 1)], sizeof(ev));
	__atomic_store_n(&h->eq_cons, cons + 1, __ATOMIC_RELEASE);
	if (ev.opcode != CM_BUS_EV_ACK || ev.cookie != 0xbadc0de)
		return "not the NOP's ACK";
	return NULL;
}

static int counters(int fd, struct cm_counters *c)
{
	return ioctl(fd, CM_IOC_COUNTERS, c);
}

int main(int argc, char **argv)
{
	struct qp_map m;
	struct cm_counters c0, c1;
	struct pollfd pfd;
	struct cm_wait w;
	struct cm_attach a = { .count = 1 };
	const char *why;
	char what[32];
	int r, i, fd;
	void *p;

	if (argc > 1)
		device = argv[1];
	ctl = fopen(argc > 2 ? argv[2] : "/dev/ttyS1", "r");
	if (!ctl) {
		printf("FAIL garbage: control tty: %s\n", strerror(errno));
		return 1;
	}

	/* 1. working */
	r = qp_open(&m);
	result(r == 0, "a queue pair attached", "%s", strerror(-r));
	if (r)
		return 1;
	why = qp_nop(&m);
	result(!why, "a NOP answered before the garbage", "%s", why ? why : "");
	counters(m.fd, &c0);

	/* 2. random ring indices in the queue pair's header */
	snprintf(what, sizeof(what), "indices %u", m.q);
	step(what);
	pfd.fd = m.fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	for (i = 0, r = 0; i < 40 && !(pfd.revents & POLLERR); i++)
		r = poll(&pfd, 1, 50);
	result(r == 1 && (pfd.revents & POLLERR), "garbage ring indices: poll() says EPOLLERR", "poll %d revents %#x", r,
	       pfd.revents);
	memset(&w, 0, sizeof(w));
	w.qp = m.q;
	errno = 0;
	r = ioctl(m.fd, CM_IOC_WAIT, &w);
	result(r == -1 && errno == EIO, "garbage ring indices: CM_IOC_WAIT EIO", "%d %s", r, strerror(errno));
	counters(m.fd, &c1);
	result(c1.bad_qp > c0.bad_qp || m.h->state == CM_BUS_QP_FAULT, "garbage ring indices: counted or faulted",
	       "bad_qp %llu state %u", (unsigned long long)c1.bad_qp, m.h->state);
	qp_close(&m);   /* released: the card takes the faulted queue pair back */

	/* 3. garbage in the control block */
	fd = open(device, O_RDWR | O_CLOEXEC);
	counters(fd, &c0);
	step("ctrl");
	errno = 0;
	r = ioctl(fd, CM_IOC_ATTACH, &a);
	result(r == -1 && errno == EIO, "garbage control block: CM_IOC_ATTACH EIO", "%d %s", r, strerror(errno));
	pfd.fd = fd;
	pfd.revents = 0;
	r = poll(&pfd, 1, 0);
	result(r == 1 && (pfd.revents & POLLERR), "garbage control block: poll() EPOLLERR", "%d revents %#x", r,
	       pfd.revents);
	errno = 0;
	r = ioctl(fd, CM_IOC_RESET);
	result(r == -1 && errno == EPROTO, "garbage control block: CM_IOC_RESET refuses it (EPROTO)", "%d %s", r,
	       strerror(errno));
	errno = 0;
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	result(p == MAP_FAILED && errno == EIO, "refused control block: mmap EIO", "%p %s", p, strerror(errno));
	errno = 0;
	r = ioctl(fd, CM_IOC_ATTACH, &a);
	result(r == -1 && errno == EIO, "refused control block: CM_IOC_ATTACH EIO", "%d %s", r, strerror(errno));
	counters(fd, &c1);
	result(c1.bus_refused > c0.bus_refused && c1.bad_ctrl > c0.bad_ctrl, "garbage control block: counted",
	       "bus_refused %llu -> %llu, bad_ctrl %llu -> %llu", (unsigned long long)c0.bus_refused,
	       (unsigned long long)c1.bus_refused, (unsigned long long)c0.bad_ctrl, (unsigned long long)c1.bad_ctrl);
	printf("COUNTERS bad_ctrl=%llu bad_qp=%llu bus_refused=%llu\n", (unsigned long long)c1.bad_ctrl,
	       (unsigned long long)c1.bad_qp, (unsigned long long)c1.bus_refused);

	/* 4. the card's control block back */
	step("restore");
	r = ioctl(fd, CM_IOC_RESET);
	result(r == 0, "restored control block: CM_IOC_RESET accepts it", "%s", strerror(errno));
	close(fd);
	r = qp_open(&m);
	result(r == 0, "restored: a queue pair attached", "%s", strerror(-r));
	if (r == 0) {
		why = qp_nop(&m);
		result(!why, "restored: a NOP answered", "%s", why ? why : "");
	}
	qp_close(&m);
	return failed ? 1 : 0;
}
