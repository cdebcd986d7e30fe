// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Firmware load through /dev/cmN (CM_IOC_FW_LOAD), inside the test VM (tests/vm/run.sh --fwload): loads an
 * image file, or a damaged copy of it made in memory, or N zero bytes, and checks the errno the uapi
 * documents. Prints "PASS fwload: LABEL ..." or "FAIL fwload: LABEL: why", and "INFO fwload: LABEL: ..."
 * with the time the load took.
 *
 *   cm_fwload DEVICE IMAGE[:corrupt|:truncated|:wrongarch] EXPECT LABEL
 *   cm_fwload DEVICE zeros:BYTES EXPECT LABEL
 *   cm_fwload DEVICE busy:BYTES - LABEL     a load of BYTES zeros runs in a child; a second load meanwhile
 *                                           must fail with EBUSY, the child's with EBADMSG
 * EXPECT: 0, or an errno name (EBADMSG, ENOEXEC, EFBIG, EBUSY, EINVAL, EOPNOTSUPP ...).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/cm.h>

static const struct {
	const char *name;
	int value;
} errnos[] = {
	{ "0", 0 }, { "EINVAL", EINVAL }, { "EBADMSG", EBADMSG }, { "ENOEXEC", ENOEXEC }, { "EFBIG", EFBIG },
	{ "EBUSY", EBUSY }, { "EOPNOTSUPP", EOPNOTSUPP }, { "ETIMEDOUT", ETIMEDOUT }, { "EIO", EIO },
	{ "EFAULT", EFAULT }, { "EPERM", EPERM }, { "ENOMEM", ENOMEM }, { "EINTR", EINTR },
};

static const char *errno_name(int e)
{
	static char buf[16];

	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
		if (errnos[i].value == e)
			return errnos[i].name;
	snprintf(buf, sizeof(buf), "%d", e);
	return buf;
}

static int errno_value(const char *name)
{
	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
		if (strcmp(errnos[i].name, name) == 0)
			return errnos[i].value;
	fprintf(stderr, "cm_fwload: unknown errno name %s\n", name);
	exit(2);
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Loads `size` bytes; returns 0 or the errno, and the time it took in *ms. */
static int load(const char *device, const uint8_t *data, size_t size, double *ms)
{
	struct cm_fw_load req = { .data = (uintptr_t)data, .size = size };
	int fd = open(device, O_RDWR | O_CLOEXEC);
	int rc, err;
	double t0;

	if (fd < 0)
		return errno;
	t0 = now_ms();
	rc = ioctl(fd, CM_IOC_FW_LOAD, &req);
	err = rc == 0 ? 0 : errno;
	*ms = now_ms() - t0;
	close(fd);
	return err;
}

static uint8_t *read_image(const char *path, size_t *size)
{
	struct stat st;
	uint8_t *buf;
	FILE *f = fopen(path, "rb");

	if (!f || fstat(fileno(f), &st) != 0) {
		fprintf(stderr, "cm_fwload: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	buf = malloc(st.st_size ? st.st_size : 1);
	if (!buf || fread(buf, 1, st.st_size, f) != (size_t)st.st_size) {
		fprintf(stderr, "cm_fwload: cannot read %s\n", path);
		exit(2);
	}
	fclose(f);
	*size = st.st_size;
	return buf;
}

static int report(const char *label, int want, int got, size_t size, double ms)
{
	printf("INFO fwload: %s: %zu bytes, %s in %.0f ms (%.1f MB/s)\n", label, size, errno_name(got), ms,
	       ms > 0 ? size / ms / 1e3 : 0.0);
	if (got == want) {
		printf("PASS fwload: %s (%s)\n", label, errno_name(got));
		return 0;
	}
	printf("FAIL fwload: %s: got %s, want %s\n", label, errno_name(got), errno_name(want));
	return 1;
}

static int busy_test(const char *device, size_t size, const char *label)
{
	uint8_t *zeros = calloc(1, size);
	uint8_t small[4096] = { 0 };
	int pipefd[2], status = 0, got;
	double ms;
	pid_t pid;

	if (!zeros || pipe(pipefd) != 0)
		return 2;
	pid = fork();
	if (pid == 0) {
		double child_ms;
		char c = 'x';

		(void)!write(pipefd[1], &c, 1);
		got = load(device, zeros, size, &child_ms);
		printf("INFO fwload: %s: the long load: %zu zero bytes, %s in %.0f ms\n", label, size, errno_name(got),
		       child_ms);
		_exit(got == EBADMSG ? 0 : 1);
	}
	{
		char c;

		(void)!read(pipefd[0], &c, 1);
	}
	usleep(300 * 1000);
	got = load(device, small, sizeof(small), &ms);
	waitpid(pid, &status, 0);
	if (got != EBUSY) {
		printf("FAIL fwload: %s: a second load during another got %s, want EBUSY\n", label, errno_name(got));
		return 1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("FAIL fwload: %s: the first load did not end with EBADMSG\n", label);
		return 1;
	}
	printf("PASS fwload: %s (EBUSY during another load, which then ended with EBADMSG)\n", label);
	return 0;
}

int main(int argc, char **argv)
{
	const char *device, *what, *label;
	uint8_t *image;
	size_t size;
	int want, got;
	double ms;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 5) {
		fprintf(stderr, "usage: cm_fwload DEVICE IMAGE[:corrupt|:truncated|:wrongarch]|zeros:N|busy:N EXPECT LABEL\n");
		return 2;
	}
	device = argv[1];
	what = argv[2];
	label = argv[4];
	if (strncmp(what, "busy:", 5) == 0)
		return busy_test(device, strtoull(what + 5, NULL, 0), label);
	want = errno_value(argv[3]);
	if (strncmp(what, "zeros:", 6) == 0) {
		size = strtoull(what + 6, NULL, 0);
		image = calloc(1, size ? size : 1);
		if (!image)
			return 2;
	} else {
		char path[256];
		const char *mod = strchr(what, ':');

		snprintf(path, sizeof(path), "%.*s", mod ? (int)(mod - what) : (int)strlen(what), what);
		image = read_image(path, &size);
		if (mod && strcmp(mod, ":corrupt") == 0) {
			image[256 + (size - 256) / 2] ^= 0x5a;        /* a payload byte: its SHA-256 differs */
		} else if (mod && strcmp(mod, ":truncated") == 0) {
			size -= 100;
		} else if (mod && strcmp(mod, ":wrongarch") == 0) {
			image[16] = image[16] == 62 ? 183 : 62;       /* header.arch: x86_64 <-> aarch64 */
		} else if (mod) {
			fprintf(stderr, "cm_fwload: unknown modification %s\n", mod);
			return 2;
		}
	}
	got = load(device, image, size, &ms);
	return report(label, want, got, size, ms);
}
