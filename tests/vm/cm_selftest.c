// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Self-test of /dev/cmN's ioctls, mmap and poll, in the style of the kernel's
 * tools/testing/selftests/pci_endpoint: a fixture (an open device), one test per behaviour, boundary
 * sizes and bad arguments (every bad call must fail with the errno include/uapi/linux/cm.h documents).
 * Runs inside the VM (tests/vm/run.sh) against the emulated card started with --bus-memory-peer-qps 4 (with
 * or without a flash: CM_IOC_FW_LOAD of a garbage image is EBADMSG or EOPNOTSUPP; cm_fwload.c loads images).
 * Prints "PASS name" / "FAIL name: why" per test and "SELFTEST n passed m failed" last.
 *
 *   cm_selftest [DEVICE] [EXPECTED_FW_VERSION_NUMBER]
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cm/bus_abi.h>
#include <linux/cm.h>

#define LENT_QPS 4   /* the harness starts cmfw with --bus-memory-peer-qps 4 */

static const char *device = "/dev/cm0";
static long expect_fw = -1;
static int passed, failed;

/* ---- fixture ---- */
struct fixture {
	int fd;
	struct cm_info info;
};

static int setup(struct fixture *fx)
{
	fx->fd = open(device, O_RDWR | O_CLOEXEC);
	if (fx->fd < 0)
		return -errno;
	if (ioctl(fx->fd, CM_IOC_INFO, &fx->info) != 0)
		return -errno;
	return 0;
}

static void teardown(struct fixture *fx)
{
	if (fx->fd >= 0)
		close(fx->fd);
}

static char why[256];
#define CHECK(cond, ...) do { if (!(cond)) { snprintf(why, sizeof(why), __VA_ARGS__); return 1; } } while (0)
/* the call must fail with errno e */
#define EXPECT_ERR(call, e) do { errno = 0; long r_ = (call); \
	CHECK(r_ == -1 && errno == (e), "line %d: %s: got %ld errno %d (%s), want %s", __LINE__, #call, r_, errno, \
	      strerror(errno), #e); } while (0)
#define EXPECT_OK(call) do { long r_ = (call); \
	CHECK(r_ == 0, "line %d: %s: got %ld errno %d (%s)", __LINE__, #call, r_, errno, strerror(errno)); } while (0)

typedef int (*test_fn)(struct fixture *);

static void run(const char *name, test_fn fn)
{
	struct fixture fx = { .fd = -1 };
	int r = setup(&fx);

	why[0] = '\0';
	if (r != 0) {
		printf("FAIL %s: setup: %s\n", name, strerror(-r));
		failed++;
	} else if (fn(&fx) != 0) {
		printf("FAIL %s: %s\n", name, why);
		failed++;
	} else {
		printf("PASS %s\n", name);
		passed++;
	}
	teardown(&fx);
	fflush(stdout);
}

/* ---- tests ---- */

static int t_info(struct fixture *fx)
{
	struct cm_info *i = &fx->info;

	CHECK(i->abi_version >> 16 == CM_BUS_ABI_MAJOR, "abi %#x", i->abi_version);
	CHECK(i->fw_state == CM_BUS_FW_READY, "fw_state %u", i->fw_state);
	CHECK(expect_fw < 0 || i->fw_version == (uint32_t)expect_fw, "fw_version %#x, want %#lx", i->fw_version,
	      expect_fw);
	CHECK(i->qp_count >= LENT_QPS && i->qp_host == LENT_QPS && i->qp_free == LENT_QPS,
	      "qp_count %u qp_host %u qp_free %u", i->qp_count, i->qp_host, i->qp_free);
	CHECK(i->map_size >= (1 << 20) && i->map_size % 4096 == 0, "map_size %llu", (unsigned long long)i->map_size);
	CHECK(i->flags & CM_INFO_F_EMULATED, "flags %#x", i->flags);
	CHECK(memchr(i->fw_version_str, 0, sizeof(i->fw_version_str)) && i->fw_version_str[0], "fw_version_str");
	printf("INFO fw_version=%#x fw_version_str=%s abi=%#x qp_count=%u qp_host=%u map_size=%llu flags=%#x\n",
	       i->fw_version, (const char *)i->fw_version_str, i->abi_version, i->qp_count, i->qp_host,
	       (unsigned long long)i->map_size, i->flags);
	return 0;
}

static int t_bad_ioctls(struct fixture *fx)
{
	char buf[64] = { 0 };

	EXPECT_ERR(ioctl(fx->fd, _IO(CM_IOC_TYPE, 0x7f)), ENOTTY);
	EXPECT_ERR(ioctl(fx->fd, _IOR(CM_IOC_TYPE, 0x00, char[8]), buf), ENOTTY);   /* INFO with a wrong size */
	EXPECT_ERR(ioctl(fx->fd, _IOWR(CM_IOC_TYPE, 0x01, char[12]), buf), ENOTTY); /* ATTACH with a wrong size */
	EXPECT_ERR(ioctl(fx->fd, _IO('T', 0x01)), ENOTTY);
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_INFO, NULL), EFAULT);
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_COUNTERS, (void *)8), EFAULT);
	return 0;
}

static int t_attach_bad_args(struct fixture *fx)
{
	struct cm_attach a;
	unsigned int count[] = { 0, CM_ATTACH_MAX + 1, 0xffffffffU };

	for (unsigned int k = 0; k < 3; k++) {
		memset(&a, 0, sizeof(a));
		a.count = count[k];
		EXPECT_ERR(ioctl(fx->fd, CM_IOC_ATTACH, &a), EINVAL);
	}
	memset(&a, 0, sizeof(a));
	a.count = 1;
	a.flags = 1;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_ATTACH, &a), EINVAL);
	a.flags = 0;
	a.pad = 1;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_ATTACH, &a), EINVAL);
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_ATTACH, NULL), EFAULT);
	return 0;
}

/* boundary counts: 1, then CM_ATTACH_MAX gets the rest, then none is left */
static int t_attach_detach(struct fixture *fx)
{
	struct cm_attach a = { .count = 1 };
	struct cm_detach d = { 0 };
	struct cm_info i;

	EXPECT_OK(ioctl(fx->fd, CM_IOC_ATTACH, &a));
	CHECK(a.attached == 1 && a.qps[0] < fx->info.qp_count, "attached %u qp %u", a.attached, a.qps[0]);
	uint32_t first = a.qps[0];
	memset(&a, 0, sizeof(a));
	a.count = CM_ATTACH_MAX;
	EXPECT_OK(ioctl(fx->fd, CM_IOC_ATTACH, &a));
	CHECK(a.attached == LENT_QPS - 1, "attached %u, want %u", a.attached, LENT_QPS - 1);
	memset(&a, 0, sizeof(a));
	a.count = 1;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_ATTACH, &a), ENOSPC);
	EXPECT_OK(ioctl(fx->fd, CM_IOC_INFO, &i));
	CHECK(i.qp_free == 0, "qp_free %u", i.qp_free);

	d.qp = first;
	d.flags = 1;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_DETACH, &d), EINVAL);
	d.flags = 0;
	EXPECT_OK(ioctl(fx->fd, CM_IOC_DETACH, &d));
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_DETACH, &d), EINVAL);    /* no longer mine */
	d.qp = fx->info.qp_count;                                 /* out of range */
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_DETACH, &d), EINVAL);
	d.qp = 0xffffffffU;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_DETACH, &d), EINVAL);
	return 0;
}

/* another file's queue pair is not mine; closing a file (or dying) releases its queue pairs */
static int t_release_on_close(struct fixture *fx)
{
	struct cm_attach a = { .count = CM_ATTACH_MAX };
	struct cm_detach d = { 0 };
	int fd2 = open(device, O_RDWR);

	CHECK(fd2 >= 0, "open: %s", strerror(errno));
	EXPECT_OK(ioctl(fd2, CM_IOC_ATTACH, &a));
	CHECK(a.attached == LENT_QPS, "attached %u", a.attached);
	d.qp = a.qps[0];
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_DETACH, &d), EINVAL);
	close(fd2);
	memset(&a, 0, sizeof(a));
	a.count = CM_ATTACH_MAX;
	EXPECT_OK(ioctl(fx->fd, CM_IOC_ATTACH, &a));
	CHECK(a.attached == LENT_QPS, "after close: attached %u", a.attached);
	close(fx->fd);
	fx->fd = -1;

	/* a process killed while holding every queue pair */
	int pipefd[2];
	CHECK(pipe(pipefd) == 0, "pipe");
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(device, O_RDWR);
		struct cm_attach b = { .count = CM_ATTACH_MAX };
		char c = ioctl(fd, CM_IOC_ATTACH, &b) == 0 && b.attached == LENT_QPS ? 'y' : 'n';
		(void)!write(pipefd[1], &c, 1);
		pause();
		_exit(0);
	}
	char c = 0;
	CHECK(read(pipefd[0], &c, 1) == 1 && c == 'y', "child could not attach");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(pipefd[0]);
	close(pipefd[1]);
	fx->fd = open(device, O_RDWR);
	memset(&a, 0, sizeof(a));
	a.count = CM_ATTACH_MAX;
	EXPECT_OK(ioctl(fx->fd, CM_IOC_ATTACH, &a));
	CHECK(a.attached == LENT_QPS, "after SIGKILL: attached %u", a.attached);
	return 0;
}

static int t_wait_bad_args(struct fixture *fx)
{
	struct cm_wait w = { .qp = CM_WAIT_ANY };
	struct cm_attach a = { .count = 1 };

	EXPECT_ERR(ioctl(fx->fd, CM_IOC_WAIT, &w), EINVAL);       /* no queue pairs */
	EXPECT_OK(ioctl(fx->fd, CM_IOC_ATTACH, &a));
	w.flags = 1;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_WAIT, &w), EINVAL);
	w.flags = 0;
	w.timeout_ms = CM_WAIT_MAX_MS + 1;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_WAIT, &w), EINVAL);
	w.timeout_ms = 0;
	w.qp = a.qps[0] + 1;                                       /* not mine */
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_WAIT, &w), EINVAL);
	w.qp = a.qps[0];
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_WAIT, &w), ETIMEDOUT);    /* nothing yet, do not sleep */

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	w.timeout_ms = 100;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_WAIT, &w), ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	CHECK(ms >= 90 && ms < 3000, "waited %ld ms for a 100 ms timeout", ms);
	return 0;
}

/* mmap: boundary lengths and offsets, private mappings refused, the control block visible */
static int t_mmap(struct fixture *fx)
{
	size_t size = fx->info.map_size;
	size_t lens[] = { 1, 4096, 4097, size };
	void *p;

	for (unsigned int k = 0; k < 4; k++) {
		p = mmap(NULL, lens[k], PROT_READ | PROT_WRITE, MAP_SHARED, fx->fd, 0);
		CHECK(p != MAP_FAILED, "mmap %zu: %s", lens[k], strerror(errno));
		CHECK(((struct cm_bus_ctrl *)p)->magic == CM_BUS_MAGIC, "magic through the mapping");
		munmap(p, lens[k]);
	}
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fx->fd, size - 4096);  /* the last page */
	CHECK(p != MAP_FAILED, "last page: %s", strerror(errno));
	munmap(p, 4096);
	CHECK(mmap(NULL, size + 4096, PROT_READ, MAP_SHARED, fx->fd, 0) == MAP_FAILED && errno == EINVAL,
	      "size + 4096: errno %d", errno);
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fx->fd, size) == MAP_FAILED && errno == EINVAL,
	      "offset size: errno %d", errno);
	CHECK(mmap(NULL, 8192, PROT_READ, MAP_SHARED, fx->fd, size - 4096) == MAP_FAILED && errno == EINVAL,
	      "straddling the end: errno %d", errno);
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fx->fd, 0) == MAP_FAILED && errno == EINVAL,
	      "MAP_PRIVATE: errno %d", errno);
	return 0;
}

/* A NOP through the mapped submission ring: the card answers ACK, poll() and WAIT see it (polling mode). */
static int t_nop_poll(struct fixture *fx)
{
	struct cm_attach a = { .count = 1 };
	size_t size = fx->info.map_size;
	struct cm_bus_ctrl *ctrl;
	void *p;

	EXPECT_OK(ioctl(fx->fd, CM_IOC_ATTACH, &a));
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fx->fd, 0);
	CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	ctrl = p;
	uint32_t q = a.qps[0];
	uint8_t *qpb = (uint8_t *)p + ctrl->qp_offset + (uint64_t)q * ctrl->qp_stride;
	struct cm_bus_qp *h = (struct cm_bus_qp *)qpb;
	CHECK(h->state == CM_BUS_QP_ATTACHED && h->owner_peer == CM_BUS_MEMORY_PEER, "qp state %u owner %u",
	      h->state, h->owner_peer);
	CHECK(h->sq_offset >= CM_BUS_QP_HEADER_SIZE && h->eq_offset + (uint64_t)h->entries * 64 <= ctrl->qp_stride,
	      "ring offsets");
	struct pollfd pfd = { .fd = fx->fd, .events = POLLIN };
	CHECK(poll(&pfd, 1, 0) == 0, "poll before: revents %#x", pfd.revents);

	uint32_t prod = h->sq_prod, cons = h->eq_cons;
	struct cm_bus_desc *sq = (struct cm_bus_desc *)(qpb + h->sq_offset);
	struct cm_bus_desc *eq = (struct cm_bus_desc *)(qpb + h->eq_offset);
	struct cm_bus_desc d = { .opcode = CM_BUS_SQ_NOP, .slot = CM_BUS_NO_SLOT, .cookie = 0xc0ffee };
	memcpy(&sq[prod & (h->entries - 1)], &d, sizeof(d));
	__atomic_store_n(&h->sq_prod, prod + 1, __ATOMIC_RELEASE);

	int r = poll(&pfd, 1, 5000);
	CHECK(r == 1 && (pfd.revents & POLLIN), "poll after NOP: %d revents %#x", r, pfd.revents);
	struct cm_wait w = { .qp = q, .timeout_ms = 1000 };
	EXPECT_OK(ioctl(fx->fd, CM_IOC_WAIT, &w));
	CHECK(w.ready == q, "ready %u", w.ready);
	CHECK(__atomic_load_n(&h->eq_prod, __ATOMIC_ACQUIRE) - cons == 1, "eq_prod %u cons %u", h->eq_prod, cons);
	struct cm_bus_desc ev;
	memcpy(&ev, &eq[cons & (h->entries - 1)], sizeof(ev));
	CHECK(ev.opcode == CM_BUS_EV_ACK && ev.cookie == 0xc0ffee && ev.status == 0, "event %#x cookie %#llx",
	      ev.opcode, (unsigned long long)ev.cookie);
	__atomic_store_n(&h->eq_cons, cons + 1, __ATOMIC_RELEASE);
	CHECK(poll(&pfd, 1, 0) == 0, "poll after consuming: revents %#x", pfd.revents);

	/* an impossible eq_cons (the host side is untrusted too): POLLERR and counted, no oops */
	struct cm_counters c0, c1;
	EXPECT_OK(ioctl(fx->fd, CM_IOC_COUNTERS, &c0));
	__atomic_store_n(&h->eq_cons, cons + 1 - 5 * h->entries, __ATOMIC_RELEASE);
	r = poll(&pfd, 1, 0);
	CHECK(r == 1 && (pfd.revents & POLLERR), "poll with bad eq_cons: %d revents %#x", r, pfd.revents);
	EXPECT_OK(ioctl(fx->fd, CM_IOC_COUNTERS, &c1));
	CHECK(c1.bad_qp > c0.bad_qp, "bad_qp %llu", (unsigned long long)c1.bad_qp);
	__atomic_store_n(&h->eq_cons, cons + 1, __ATOMIC_RELEASE);
	munmap(p, size);
	return 0;
}

static int t_fw_load(struct fixture *fx)
{
	static char image[4096];
	struct cm_fw_load f = { .data = (uintptr_t)image, .size = sizeof(image) };

	f.size = 0;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_FW_LOAD, &f), EINVAL);
	f.size = (uint64_t)CM_FW_MAX_SIZE + 1;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_FW_LOAD, &f), EINVAL);
	f.size = sizeof(image);
	f.flags = 1;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_FW_LOAD, &f), EINVAL);
	f.flags = 0;
	f.pad = 1;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_FW_LOAD, &f), EINVAL);
	f.pad = 0;
	f.data = 8;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_FW_LOAD, &f), EFAULT);
	f.data = (uintptr_t)image;
	/*
	 * The arguments are good: a card without a firmware-load window (cmfw not booted from a flash) is
	 * EOPNOTSUPP; one with a window refuses 4096 zero bytes as an image (EBADMSG, nothing written).
	 */
	struct cm_bus_ctrl *ctrl = mmap(NULL, sizeof(*ctrl), PROT_READ, MAP_SHARED, fx->fd, 0);
	CHECK(ctrl != MAP_FAILED, "mmap: %s", strerror(errno));
	uint32_t window = ctrl->fwload_size;
	uint64_t window_at = ctrl->fwload_offset;
	munmap(ctrl, sizeof(*ctrl));
	printf("INFO fwload_offset=%#llx fwload_size=%u\n", (unsigned long long)window_at, window);
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_FW_LOAD, &f), window ? EBADMSG : EOPNOTSUPP);
	return 0;
}

static int t_reset(struct fixture *fx)
{
	struct cm_attach a = { .count = 1 };

	EXPECT_OK(ioctl(fx->fd, CM_IOC_RESET));
	EXPECT_OK(ioctl(fx->fd, CM_IOC_ATTACH, &a));
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_RESET), EBUSY);
	return 0;
}

/* CM_IOC_DOORBELL: only for this file's queue pairs; behind ivshmem-plain (this harness) the card has no
 * doorbells (EOPNOTSUPP), behind ivshmem-doorbell it rings (the --httpd-msix run uses it through libcm). */
static int t_doorbell(struct fixture *fx)
{
	struct cm_attach a = { .count = 1 };
	struct cm_doorbell d = { 0 };
	struct cm_counters c0, c1;
	int other;

	EXPECT_OK(ioctl(fx->fd, CM_IOC_COUNTERS, &c0));
	d.qp = 0;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_DOORBELL, &d), EINVAL);          /* no queue pairs yet */
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_DOORBELL, NULL), EFAULT);
	EXPECT_OK(ioctl(fx->fd, CM_IOC_ATTACH, &a));
	d.qp = a.qps[0];
	d.flags = 1;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_DOORBELL, &d), EINVAL);          /* undefined flags */
	d.flags = 0;
	d.qp = fx->info.qp_count;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_DOORBELL, &d), EINVAL);          /* out of range */
	d.qp = 0xffffffffU;
	EXPECT_ERR(ioctl(fx->fd, CM_IOC_DOORBELL, &d), EINVAL);
	/* another file's queue pair */
	other = open(device, O_RDWR | O_CLOEXEC);
	CHECK(other >= 0, "open: %s", strerror(errno));
	d.qp = a.qps[0];
	errno = 0;
	if (ioctl(other, CM_IOC_DOORBELL, &d) != -1 || errno != EINVAL) {
		close(other);
		CHECK(0, "doorbell on another file's queue pair: errno %d, want EINVAL", errno);
	}
	close(other);
	if (fx->info.flags & CM_INFO_F_DOORBELL) {
		EXPECT_OK(ioctl(fx->fd, CM_IOC_DOORBELL, &d));
	} else {
		EXPECT_ERR(ioctl(fx->fd, CM_IOC_DOORBELL, &d), EOPNOTSUPP);
	}
	EXPECT_OK(ioctl(fx->fd, CM_IOC_COUNTERS, &c1));
	CHECK(c1.bad_ioctls >= c0.bad_ioctls + 5, "bad_ioctls %llu -> %llu", (unsigned long long)c0.bad_ioctls,
	      (unsigned long long)c1.bad_ioctls);
	return 0;
}

static int t_counters(struct fixture *fx)
{
	struct cm_counters c;

	EXPECT_OK(ioctl(fx->fd, CM_IOC_COUNTERS, &c));
	CHECK(c.opens >= 10 && c.bad_ioctls >= 10 && c.released >= 2 * LENT_QPS && c.attaches >= 10,
	      "opens %llu bad_ioctls %llu released %llu attaches %llu", (unsigned long long)c.opens,
	      (unsigned long long)c.bad_ioctls, (unsigned long long)c.released, (unsigned long long)c.attaches);
	printf("COUNTERS opens=%llu mmaps=%llu attaches=%llu detaches=%llu released=%llu timer_ticks=%llu "
	       "bad_qp=%llu bad_ioctls=%llu\n", (unsigned long long)c.opens, (unsigned long long)c.mmaps,
	       (unsigned long long)c.attaches, (unsigned long long)c.detaches, (unsigned long long)c.released,
	       (unsigned long long)c.timer_ticks, (unsigned long long)c.bad_qp, (unsigned long long)c.bad_ioctls);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		device = argv[1];
	if (argc > 2)
		expect_fw = strtol(argv[2], NULL, 0);
	setvbuf(stdout, NULL, _IOLBF, 0);

	run("info", t_info);
	run("bad_ioctls", t_bad_ioctls);
	run("attach_bad_args", t_attach_bad_args);
	run("attach_detach", t_attach_detach);
	run("release_on_close", t_release_on_close);
	run("wait_bad_args", t_wait_bad_args);
	run("mmap", t_mmap);
	run("nop_poll", t_nop_poll);
	run("fw_load", t_fw_load);
	run("doorbell", t_doorbell);
	run("reset", t_reset);
	run("counters", t_counters);
	printf("SELFTEST %d passed %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
