// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * cm: host driver of the cm connection-offload card.
 *
 * The card exposes its "bus" (libcm/include/cm/bus_abi.h, docs/bus.md) as BAR2: a control block, queue
 * pairs (header + submission and event rings) and buffer slots. This driver validates the control block,
 * creates /dev/cmN, lets processes mmap the bus memory (the data path is user space: libcm), hands out the
 * queue pairs the card lent to this host (released when the file closes) and reports event-ring readiness
 * through poll() and CM_IOC_WAIT. The user interface is include/uapi/linux/cm.h.
 *
 * Firmware load (CM_IOC_FW_LOAD): when the card advertises a firmware-load window (ctrl.fwload_size, bus
 * ABI 1.1), the image is sent through its mailbox, BEGIN, CHUNK..., COMMIT, each answered by the card
 * (docs/bus.md "Firmware load"); the card checks it and writes it into its flash's inactive slot.
 *
 * The emulated card is QEMU's ivshmem device (1af4:1110) whose memory is the emulator's bus file: we bind
 * it only when BAR2 starts with cm's control block, so other ivshmem users are left alone.
 *
 * Queue pairs: QEMU's ivshmem never speaks the card's attach protocol (ATTACH/DETACH on the socket), so the
 * card lends queue pairs to a memory-only host up front (cmfw --bus-memory-peer-qps N): they are ATTACHED
 * with owner_peer == CM_BUS_MEMORY_PEER. This driver hands those out to files, and when a file goes away
 * asks the card to release them (bus ABI 1.2: release_req = generation; cm_release_qp): the card resets
 * their connections and lends them again with a new generation, and only then are they handed out again.
 *
 * The driver does not trust the card: every value read from BAR2 is bounds-checked before it is used
 * (the control block once, copied, at probe and reset; queue-pair headers and ring indices on every read).
 */

#include <linux/bitops.h>
#include <linux/cred.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/kernel.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/poll.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/hrtimer.h>
#include <linux/ktime.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/wait.h>

#include <cm/bus_abi.h>
#include <uapi/linux/cm.h>

#define DRV_NAME "cm"

/* ---- Register map ---------------------------------------------------------------------------------- */

/* QEMU ivshmem (docs/specs/ivshmem-spec.rst): BAR0 registers, BAR1 MSI-X table, BAR2 the shared memory. */
#define PCI_VENDOR_ID_REDHAT_QUMRANET 0x1af4
#define PCI_DEVICE_ID_IVSHMEM 0x1110
#define CM_IVSHMEM_REG_BAR 0
#define CM_IVSHMEM_MEM_BAR 2
#define CM_IVSHMEM_INTRMASK 0x00
#define CM_IVSHMEM_INTRSTATUS 0x04
#define CM_IVSHMEM_IVPOSITION 0x08
#define CM_IVSHMEM_DOORBELL 0x0c     /* (peer id << 16) | vector */

/* Board kinds (pci_device_id.driver_data). */
#define CM_BOARD_IVSHMEM 0           /* the emulated card behind QEMU's ivshmem */
#define CM_BOARD_CARD 1              /* the real card: same bus ABI in BAR2 (reserved; no ID assigned yet) */

/* Offsets inside a queue-pair header, and the minimum sizes the driver relies on. */
#define CM_QP_STATE offsetof(struct cm_bus_qp, state)
#define CM_QP_OWNER offsetof(struct cm_bus_qp, owner_peer)
#define CM_QP_EQ_PROD offsetof(struct cm_bus_qp, eq_prod)
#define CM_QP_EQ_CONS offsetof(struct cm_bus_qp, eq_cons)
#define CM_QP_HOST_PID offsetof(struct cm_bus_qp, host_pid)
#define CM_QP_GENERATION offsetof(struct cm_bus_qp, generation)
#define CM_QP_RELEASE offsetof(struct cm_bus_qp, release_req)
#define CM_RELEASE_WAIT_MS 1000U     /* CM_IOC_ATTACH waits this long for queue pairs the card takes back */

/* Firmware load: offsets in the mailbox, and how long the card may take to answer one command. */
#define CM_FW_CMD offsetof(struct cm_bus_fwload, cmd)
#define CM_FW_SEQ offsetof(struct cm_bus_fwload, seq)
#define CM_FW_OFFSET offsetof(struct cm_bus_fwload, offset)
#define CM_FW_LENGTH offsetof(struct cm_bus_fwload, length)
#define CM_FW_TOTAL offsetof(struct cm_bus_fwload, total)
#define CM_FW_DONE_SEQ offsetof(struct cm_bus_fwload, done_seq)
#define CM_FW_STATUS offsetof(struct cm_bus_fwload, status)
#define CM_FW_SLOT offsetof(struct cm_bus_fwload, slot)
#define CM_FW_MESSAGE offsetof(struct cm_bus_fwload, message)
#define CM_FW_STEP_TIMEOUT_MS 5000U     /* BEGIN, CHUNK, ABORT: the card looks every 100 ms at most */
#define CM_FW_COMMIT_TIMEOUT_MS 30000U  /* COMMIT: the card hashes the image and writes its flash */
#define CM_FW_ABORT_TIMEOUT_MS 1000U
#define CM_FW_PIECE 16384U              /* bytes copied into the BAR per hold of cm->lock */

/* ---- Module parameters ------------------------------------------------------------------------------- */

static unsigned int poll_interval_ms = 10;
module_param(poll_interval_ms, uint, 0644);
MODULE_PARM_DESC(poll_interval_ms, "event-ring re-check period without MSI-X (1..1000 ms, default 10)");
static unsigned int poll_interval_us;
module_param(poll_interval_us, uint, 0644);
MODULE_PARM_DESC(poll_interval_us, "the same in microseconds (50..1000000), used instead when not 0 (default 0)");

static bool use_msix = true;
module_param(use_msix, bool, 0444);
MODULE_PARM_DESC(use_msix, "use the card's MSI-X vectors when it has them (default yes)");

static DEFINE_IDA(cm_ida);

/* ---- Private structures ---------------------------------------------------------------------------- */

struct cm_file;

struct cm_dev {
	struct pci_dev *pdev;
	struct kref ref;             /* the PCI binding and each open file */
	int id;                      /* N of /dev/cmN */
	char name[16];
	struct miscdevice misc;
	unsigned long board;         /* CM_BOARD_* */

	void __iomem *regs;          /* BAR0 (ivshmem registers), may be NULL */
	void __iomem *mem;           /* BAR2: the bus memory */
	resource_size_t mem_phys;
	resource_size_t mem_len;

	/* serializes the ioctls that change the device (attach, detach, reset) */
	struct mutex ioctl_lock;
	/* held for a whole CM_IOC_FW_LOAD (seconds; not under ioctl_lock): one load at a time, others EBUSY */
	struct mutex fw_lock;

	/*
	 * protects everything below: `gone` and `valid` (the BAR may be read only while the device is bound
	 * and the control block valid), the owner table, the copied control block, and the counters. A
	 * spinlock because poll()/wait conditions, the timer and the interrupt handler take it.
	 */
	spinlock_t lock;
	bool gone;                   /* removed: nothing may touch the BAR */
	bool valid;                  /* ctrl was validated */
	bool refused;                /* the card's memory no longer matches ctrl (counted in bus_refused) */
	struct cm_bus_ctrl ctrl;     /* the validated copy (magic .. fw_version_str) */
	struct cm_file *owner[CM_BUS_MAX_QPS]; /* which file holds each lent queue pair */
	/*
	 * Released queue pairs the card has not lent again yet (bus ABI 1.2: release_req): not handed out
	 * until the card shows a generation other than the one released.
	 */
	bool pending[CM_BUS_MAX_QPS];
	u32 released_gen[CM_BUS_MAX_QPS];
	struct cm_counters cnt;

	wait_queue_head_t wq;        /* pollers and waiters: woken by interrupts or the timer */
	struct hrtimer timer;        /* the polling fallback without MSI-X */
	bool timer_armed;            /* under lock: started and not yet seen ending (see cm_arm_timer) */
	int nvec;                    /* MSI-X vectors in use, 0: polling */
};

struct cm_file {
	struct cm_dev *cm;
};

/* ---- Accessors: every BAR read goes through these and is bounds-checked by construction --------------- */

static u64 cm_qp_base(const struct cm_dev *cm, u32 qp)
{
	/* qp < ctrl.qp_count and qp_offset + qp_count * qp_stride <= total_size <= mem_len (cm_check_ctrl) */
	return cm->ctrl.qp_offset + (u64)qp * cm->ctrl.qp_stride;
}

static u32 cm_qp_read(const struct cm_dev *cm, u32 qp, size_t off)
{
	return readl(cm->mem + cm_qp_base(cm, qp) + off);
}

static void cm_qp_write(const struct cm_dev *cm, u32 qp, size_t off, u32 v)
{
	writel(v, cm->mem + cm_qp_base(cm, qp) + off);
}

/* Whether the card lent queue pair `qp` to this host. Caller holds cm->lock, cm->valid. */
static bool cm_qp_lent(const struct cm_dev *cm, u32 qp)
{
	return cm_qp_read(cm, qp, CM_QP_STATE) == CM_BUS_QP_ATTACHED &&
	       cm_qp_read(cm, qp, CM_QP_OWNER) == CM_BUS_MEMORY_PEER;
}

/*
 * Whether queue pair `qp`, released by this driver, is still being taken back by the card (its connections
 * reset, then lent again with a new generation). Caller holds cm->lock, cm->valid.
 */
static bool cm_qp_pending(struct cm_dev *cm, u32 qp)
{
	if (cm->pending[qp] && cm_qp_lent(cm, qp) && cm_qp_read(cm, qp, CM_QP_GENERATION) != cm->released_gen[qp])
		cm->pending[qp] = false;
	return cm->pending[qp];
}

/* Any released queue pair still pending. Caller holds cm->lock. */
static bool cm_any_pending(struct cm_dev *cm)
{
	u32 q;

	if (cm->gone || !cm->valid)
		return false;
	for (q = 0; q < cm->ctrl.qp_count; q++)
		if (cm_qp_pending(cm, q))
			return true;
	return false;
}

/*
 * Readiness of one queue pair: 1 events pending, 0 none, -EIO faulted or impossible indices (the host's
 * eq_cons is in the BAR too and may be anything). Caller holds cm->lock, cm->valid.
 */
static int cm_qp_ready(struct cm_dev *cm, u32 qp)
{
	u32 state = cm_qp_read(cm, qp, CM_QP_STATE);
	u32 pending;

	if (state != CM_BUS_QP_ATTACHED)
		return -EIO;
	pending = cm_qp_read(cm, qp, CM_QP_EQ_PROD) - cm_qp_read(cm, qp, CM_QP_EQ_CONS);
	if (pending > cm->ctrl.ring_entries) {
		cm->cnt.bad_qp++;
		return -EIO;
	}
	return pending != 0;
}

/* Whether the card still runs the memory we validated. Caller holds cm->lock. */
static bool cm_card_alive(struct cm_dev *cm)
{
	bool alive;

	if (cm->gone || !cm->valid)
		return false;
	alive = readl(cm->mem + offsetof(struct cm_bus_ctrl, magic)) == CM_BUS_MAGIC &&
		readl(cm->mem + offsetof(struct cm_bus_ctrl, fw_state)) == CM_BUS_FW_READY &&
		readq(cm->mem + offsetof(struct cm_bus_ctrl, format_id)) == cm->ctrl.format_id;
	/* counted once per change (the card stopped, restarted or its memory was overwritten), not per look */
	if (!alive && !cm->refused) {
		cm->refused = true;
		cm->cnt.bus_refused++;
	} else if (alive) {
		cm->refused = false;
	}
	return alive;
}

/* Whether the card takes doorbells: QEMU's ivshmem-doorbell (MSI-X, BAR0 registers); ivshmem-plain's BAR0
 * has the register too, but nobody listens behind it. */
static bool cm_has_doorbell(const struct cm_dev *cm)
{
	return cm->board == CM_BOARD_IVSHMEM && cm->regs && cm->nvec;
}

/*
 * Rings the card's doorbell of queue pair q: QEMU's ivshmem writes the eventfd the card's greeting gave it
 * for (CM_BUS_CARD_PEER_ID, vector q) (firmware/bus/device.cpp: vector q = doorbell of queue pair q).
 * Caller holds cm->lock, checked !gone, and q < ctrl.qp_count.
 */
static void cm_ring(struct cm_dev *cm, u32 q)
{
	if (!cm_has_doorbell(cm))
		return;
	wmb();                   /* the ring's writes before the doorbell */
	writel((CM_BUS_CARD_PEER_ID << 16) | (q & 0xffff), cm->regs + CM_IVSHMEM_DOORBELL);
	cm->cnt.doorbells++;
}

/*
 * Copies and validates the control block: the same rules as libcm's check_ctrl, from the driver's side:
 * everything the driver or a mapping will index must lie inside BAR2.
 */
static int cm_check_ctrl(const struct cm_bus_ctrl *c, resource_size_t bar_len, const char **why)
{
	u64 qp_end, slot_end;

	*why = "bad magic";
	if (c->magic != CM_BUS_MAGIC)
		return -ENODEV;
	*why = "ABI major version";
	if ((c->abi_version >> 16) != CM_BUS_ABI_MAJOR)
		return -ENODEV;
	*why = "control block sizes";
	if (c->ctrl_size != CM_BUS_CTRL_SIZE || c->desc_size != CM_BUS_DESC_SIZE ||
	    c->total_size > bar_len || c->total_size < CM_BUS_CTRL_SIZE || !PAGE_ALIGNED(c->total_size))
		return -EPROTO;
	*why = "queue pairs";
	if (c->qp_count == 0 || c->qp_count > CM_BUS_MAX_QPS || c->card_vectors != c->qp_count ||
	    !is_power_of_2(c->ring_entries) || c->ring_entries < 16 || c->ring_entries > 65536 ||
	    c->qp_stride % 4096 || c->qp_stride < CM_BUS_QP_HEADER_SIZE + 2ULL * c->ring_entries * CM_BUS_DESC_SIZE ||
	    c->qp_offset < CM_BUS_CTRL_SIZE || c->qp_offset % 4096)
		return -EPROTO;
	/* qp_count <= 256 and qp_stride < 2^32: no overflow in 64 bits */
	qp_end = c->qp_offset + (u64)c->qp_count * c->qp_stride;
	*why = "slots";
	if (c->slot_size < 64 || c->slot_size % 64 || c->slot_offset % 4096 || c->slot_offset < qp_end ||
	    c->slot_offset > c->total_size || (u64)c->slots_per_qp * c->qp_count > c->slot_count)
		return -EPROTO;
	slot_end = c->slot_offset + (u64)c->slot_count * c->slot_size;
	if (slot_end > c->total_size)
		return -EPROTO;
	/* ABI 1.1: the firmware-load window, between the queue pairs and the slots (1.0 cards: zeros) */
	*why = "firmware-load window";
	if (c->fwload_size == 0) {
		if (c->fwload_offset)
			return -EPROTO;
	} else if (c->fwload_offset % 4096 || c->fwload_size % 4096 || c->fwload_size < CM_BUS_FWLOAD_MIN_SIZE ||
		   c->fwload_size > CM_BUS_FWLOAD_HEADER_SIZE + (u64)CM_BUS_FWLOAD_MAX_IMAGE ||
		   c->fwload_offset < qp_end || c->fwload_offset > c->slot_offset ||
		   c->fwload_size > c->slot_offset - c->fwload_offset) {
		return -EPROTO;
	}
	*why = NULL;
	return 0;
}

/* Reads the control block into cm->ctrl and validates it. Caller holds ioctl_lock (or is probe). */
static int cm_load_ctrl(struct cm_dev *cm)
{
	struct cm_bus_ctrl *c;
	const char *why;
	unsigned long flags;
	int ret;

	c = kmalloc(sizeof(*c), GFP_KERNEL);
	if (!c)
		return -ENOMEM;
	memcpy_fromio(c, cm->mem, sizeof(*c));
	c->fw_version_str[sizeof(c->fw_version_str) - 1] = '\0';
	ret = cm_check_ctrl(c, cm->mem_len, &why);

	spin_lock_irqsave(&cm->lock, flags);
	if (ret) {
		cm->valid = false;
		cm->cnt.bad_ctrl++;
	} else {
		cm->ctrl = *c;
		cm->valid = true;
		memset(cm->pending, 0, sizeof(cm->pending));
	}
	spin_unlock_irqrestore(&cm->lock, flags);

	if (ret == -EPROTO)
		dev_warn(&cm->pdev->dev, "bus control block refused: %s\n", why);
	kfree(c);
	return ret;
}

/* ---- Interrupts and the polling fallback ------------------------------------------------------------- */

static irqreturn_t cm_irq(int irq, void *data)
{
	struct cm_dev *cm = data;

	spin_lock(&cm->lock);
	cm->cnt.irqs++;
	spin_unlock(&cm->lock);
	wake_up_interruptible(&cm->wq);
	return IRQ_HANDLED;
}

/* The polling period: poll_interval_us when set, else poll_interval_ms (a high-resolution timer: a period
 * below the kernel's tick, e.g. 200 us with HZ=250, is what makes a VM's server answer in well under 4 ms). */
static ktime_t cm_poll_period(void)
{
	unsigned int us = READ_ONCE(poll_interval_us);

	if (us)
		return ns_to_ktime((u64)clamp(us, 50U, 1000000U) * NSEC_PER_USEC);
	return ms_to_ktime(clamp(READ_ONCE(poll_interval_ms), 1U, 1000U));
}

/* Without MSI-X nobody tells us about events: while someone sleeps, wake them to re-check the rings. */
static enum hrtimer_restart cm_timer(struct hrtimer *t)
{
	struct cm_dev *cm = container_of(t, struct cm_dev, timer);
	enum hrtimer_restart again = HRTIMER_NORESTART;
	unsigned long flags;

	spin_lock_irqsave(&cm->lock, flags);
	cm->cnt.timer_ticks++;
	if (!cm->gone && wq_has_sleeper(&cm->wq)) {
		/* still armed: nobody else starts the timer, so it is not queued while we forward it */
		hrtimer_forward_now(t, cm_poll_period());
		again = HRTIMER_RESTART;
	} else {
		cm->timer_armed = false;
	}
	spin_unlock_irqrestore(&cm->lock, flags);
	wake_up_interruptible(&cm->wq);
	return again;
}

/* Starts the polling timer unless it runs already. timer_armed, under the lock, makes sure the timer is
 * never started while its callback may still forward it (hrtimer_forward on a queued timer warns). */
static void cm_arm_timer(struct cm_dev *cm)
{
	unsigned long flags;

	if (cm->nvec)
		return;
	spin_lock_irqsave(&cm->lock, flags);
	if (!cm->timer_armed && !cm->gone) {
		cm->timer_armed = true;
		hrtimer_start(&cm->timer, cm_poll_period(), HRTIMER_MODE_REL);
	}
	spin_unlock_irqrestore(&cm->lock, flags);
}

/* ---- Readiness of a file ------------------------------------------------------------------------------ */

/*
 * For queue pair `qp` of `f` (or any: CM_WAIT_ANY): 1 with *ready set, 0 nothing, -EIO a queue pair
 * faulted or the card stopped, -ENODEV removed, -EINVAL not this file's queue pair / no queue pairs.
 */
static int cm_file_ready(struct cm_file *f, u32 qp, u32 *ready)
{
	struct cm_dev *cm = f->cm;
	unsigned long flags;
	int ret = -EINVAL;
	u32 q;

	spin_lock_irqsave(&cm->lock, flags);
	if (cm->gone) {
		ret = -ENODEV;
		goto out;
	}
	if (!cm_card_alive(cm)) {
		ret = -EIO;
		goto out;
	}
	for (q = 0; q < cm->ctrl.qp_count; q++) {
		int r;

		if (cm->owner[q] != f || (qp != CM_WAIT_ANY && q != qp))
			continue;
		r = cm_qp_ready(cm, q);
		if (r) {
			*ready = q;
			ret = r;
			goto out;
		}
		ret = 0;
	}
out:
	spin_unlock_irqrestore(&cm->lock, flags);
	return ret;
}

/* ---- ioctl helpers, one per command ---------------------------------------------------------------- */

static int cm_ioctl_info(struct cm_file *f, void __user *arg)
{
	struct cm_dev *cm = f->cm;
	struct cm_info info = {};
	unsigned long flags;
	u32 q;

	spin_lock_irqsave(&cm->lock, flags);
	info.flags = (cm->nvec ? CM_INFO_F_MSIX : 0) | (cm->board == CM_BOARD_IVSHMEM ? CM_INFO_F_EMULATED : 0) |
		     (cm_has_doorbell(cm) ? CM_INFO_F_DOORBELL : 0);
	if (cm->valid && !cm->gone) {
		info.abi_version = cm->ctrl.abi_version;
		info.fw_version = cm->ctrl.fw_version;
		info.fw_state = readl(cm->mem + offsetof(struct cm_bus_ctrl, fw_state));
		info.map_size = cm->ctrl.total_size;
		info.format_id = cm->ctrl.format_id;
		info.heartbeat = readq(cm->mem + offsetof(struct cm_bus_ctrl, heartbeat));
		info.qp_count = cm->ctrl.qp_count;
		info.slot_size = cm->ctrl.slot_size;
		info.slots_per_qp = cm->ctrl.slots_per_qp;
		info.conn_credit = cm->ctrl.conn_credit;
		memcpy(info.fw_version_str, cm->ctrl.fw_version_str, sizeof(info.fw_version_str));
		for (q = 0; q < cm->ctrl.qp_count; q++) {
			/* a released queue pair the card is taking back is still this host's, and free */
			if (!cm_qp_pending(cm, q) && !cm_qp_lent(cm, q))
				continue;
			info.qp_host++;
			if (!cm->owner[q])
				info.qp_free++;
		}
	}
	spin_unlock_irqrestore(&cm->lock, flags);

	if (copy_to_user(arg, &info, sizeof(info)))
		return -EFAULT;
	return 0;
}

static int cm_ioctl_attach(struct cm_file *f, void __user *arg)
{
	struct cm_dev *cm = f->cm;
	struct cm_attach req;
	unsigned long flags, until;
	bool pending;
	u32 q;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.count == 0 || req.count > CM_ATTACH_MAX || req.flags || req.pad)
		return -EINVAL;
	req.attached = 0;
	memset(req.qps, 0, sizeof(req.qps));

	/*
	 * Queue pairs released a moment ago (a server that died and is being restarted) come back once the
	 * card has reset their connections: wait for that, briefly, rather than answer ENOSPC.
	 */
	until = jiffies + msecs_to_jiffies(CM_RELEASE_WAIT_MS);
	for (;;) {
		spin_lock_irqsave(&cm->lock, flags);
		pending = cm_any_pending(cm);
		spin_unlock_irqrestore(&cm->lock, flags);
		if (!pending || time_after(jiffies, until))
			break;
		if (msleep_interruptible(1))
			return -EINTR;
	}

	spin_lock_irqsave(&cm->lock, flags);
	if (!cm_card_alive(cm)) {
		spin_unlock_irqrestore(&cm->lock, flags);
		return -EIO;
	}
	for (q = 0; q < cm->ctrl.qp_count && req.attached < req.count; q++) {
		if (cm->owner[q] || cm_qp_pending(cm, q) || !cm_qp_lent(cm, q))
			continue;
		cm->owner[q] = f;
		cm_qp_write(cm, q, CM_QP_HOST_PID, task_tgid_nr(current));
		req.qps[req.attached++] = q;
		cm->cnt.attaches++;
	}
	spin_unlock_irqrestore(&cm->lock, flags);
	if (!req.attached)
		return -ENOSPC;

	if (copy_to_user(arg, &req, sizeof(req))) {
		/* the caller cannot learn its queue pairs: give them back */
		spin_lock_irqsave(&cm->lock, flags);
		for (q = 0; q < req.attached; q++)
			cm->owner[req.qps[q]] = NULL;
		cm->cnt.attaches -= req.attached;
		spin_unlock_irqrestore(&cm->lock, flags);
		return -EFAULT;
	}
	return 0;
}

/*
 * Gives queue pair q back. Caller holds cm->lock and checked that f owns it. A card of bus ABI 1.2 or later
 * is asked to release it (release_req = its generation): the card resets the connections the process left
 * and lends the queue pair again with a new generation; until then it is not handed out (cm_qp_pending).
 */
static void cm_release_qp(struct cm_dev *cm, u32 q)
{
	u32 state, gen;

	cm->owner[q] = NULL;
	if (cm->gone || !cm->valid)
		return;
	cm_qp_write(cm, q, CM_QP_HOST_PID, 0);
	if ((cm->ctrl.abi_version & 0xffff) < 2)
		return;
	state = cm_qp_read(cm, q, CM_QP_STATE);
	if ((state != CM_BUS_QP_ATTACHED && state != CM_BUS_QP_FAULT) ||
	    cm_qp_read(cm, q, CM_QP_OWNER) != CM_BUS_MEMORY_PEER)
		return;              /* not lent to us any more (the card restarted): nothing to release */
	gen = cm_qp_read(cm, q, CM_QP_GENERATION);
	cm->released_gen[q] = gen;
	cm->pending[q] = true;
	wmb();                   /* the process's last ring writes before the request */
	cm_qp_write(cm, q, CM_QP_RELEASE, gen);
	cm_ring(cm, q);          /* a card that stopped polling this queue pair (its host rang) must see it */
}

static int cm_ioctl_detach(struct cm_file *f, void __user *arg)
{
	struct cm_dev *cm = f->cm;
	struct cm_detach req;
	unsigned long flags;
	int ret = 0;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags)
		return -EINVAL;

	spin_lock_irqsave(&cm->lock, flags);
	if (!cm->valid || req.qp >= cm->ctrl.qp_count || cm->owner[req.qp] != f) {
		ret = -EINVAL;
	} else {
		cm_release_qp(cm, req.qp);
		cm->cnt.detaches++;
	}
	spin_unlock_irqrestore(&cm->lock, flags);
	return ret;
}

static int cm_ioctl_wait(struct cm_file *f, void __user *arg)
{
	struct cm_dev *cm = f->cm;
	struct cm_wait req;
	unsigned long flags;
	long left;
	int ret;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.timeout_ms > CM_WAIT_MAX_MS)
		return -EINVAL;

	spin_lock_irqsave(&cm->lock, flags);
	cm->cnt.waits++;
	spin_unlock_irqrestore(&cm->lock, flags);

	ret = cm_file_ready(f, req.qp, &req.ready);
	if (ret == 0 && req.timeout_ms) {
		cm_arm_timer(cm);
		left = wait_event_interruptible_timeout(cm->wq, (ret = cm_file_ready(f, req.qp, &req.ready)) != 0,
							msecs_to_jiffies(req.timeout_ms));
		if (left < 0)
			return -EINTR;
	}
	if (ret < 0)
		return ret;
	if (ret == 0)
		return -ETIMEDOUT;
	if (copy_to_user(arg, &req, sizeof(req)))
		return -EFAULT;
	return 0;
}

static int cm_ioctl_reset(struct cm_file *f)
{
	struct cm_dev *cm = f->cm;
	unsigned long flags;
	int busy = 0;
	u32 q;
	int ret;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (mutex_is_locked(&cm->fw_lock))
		return -EBUSY;       /* a firmware load is in progress */
	spin_lock_irqsave(&cm->lock, flags);
	for (q = 0; q < CM_BUS_MAX_QPS; q++)
		busy |= cm->owner[q] != NULL;
	if (!busy)
		cm->cnt.resets++;
	spin_unlock_irqrestore(&cm->lock, flags);
	if (busy)
		return -EBUSY;

	ret = cm_load_ctrl(cm);
	if (ret)
		return ret == -ENOMEM ? ret : -EPROTO;
	wake_up_interruptible(&cm->wq);
	return 0;
}

/*
 * ---- Firmware load ----------------------------------------------------------------------------------
 *
 * One load (CM_IOC_FW_LOAD) through the card's firmware-load window. Every access to the BAR is made under
 * cm->lock after checking that the device is still bound and the card still runs the memory format the
 * load started with (a reset or a restarted card ends the load with EIO); the user's bytes are copied into
 * a bounce buffer outside the lock, then into the data area CM_FW_PIECE bytes per hold.
 */
struct cm_fw_xfer {
	struct cm_dev *cm;
	u64 box;                     /* BAR offset of the mailbox */
	u64 data;                    /* BAR offset of the data area */
	u32 data_size;               /* the largest chunk */
	u64 format_id;               /* of the memory the window was validated in */
	u32 seq;                     /* of the last command sent (each command: the next value) */
	u32 slot;                    /* COMMIT's answer: the flash slot written */
	u8 *buf;                     /* CM_FW_PIECE bytes */
	char message[CM_BUS_FWLOAD_MESSAGE_MAX];
};

/* Takes cm->lock when the BAR may be touched for this load; else returns -ENODEV / -EIO unlocked. */
static int cm_fw_lock(struct cm_fw_xfer *x, unsigned long *flags)
{
	struct cm_dev *cm = x->cm;

	spin_lock_irqsave(&cm->lock, *flags);
	if (cm->gone) {
		spin_unlock_irqrestore(&cm->lock, *flags);
		return -ENODEV;
	}
	if (!cm_card_alive(cm) || cm->ctrl.format_id != x->format_id || cm->ctrl.fwload_size == 0) {
		spin_unlock_irqrestore(&cm->lock, *flags);
		return -EIO;
	}
	return 0;
}

static const char *cm_fw_cmd_name(u32 cmd)
{
	switch (cmd) {
	case CM_BUS_FWLOAD_BEGIN:
		return "BEGIN";
	case CM_BUS_FWLOAD_CHUNK:
		return "CHUNK";
	case CM_BUS_FWLOAD_COMMIT:
		return "COMMIT";
	default:
		return "ABORT";
	}
}

/*
 * Sends one command and waits for its answer: the card's status (0 or an errno value) in *status and its
 * message in x->message. -ETIMEDOUT, -EINTR (only when `interruptible`), -EIO, -ENODEV.
 */
static int cm_fw_command(struct cm_fw_xfer *x, u32 cmd, u64 offset, u32 length, u64 total, unsigned int timeout_ms,
			 bool interruptible, u32 *status)
{
	void __iomem *box = x->cm->mem + x->box;
	unsigned long deadline, flags;
	int ret;

	ret = cm_fw_lock(x, &flags);
	if (ret)
		return ret;
	/*
	 * Never a seq already used in this load: after a timeout the ABORT gets a new one, so the card answers
	 * it even when it is still busy with (or has just copied) the command that timed out.
	 */
	x->seq++;
	writel(cmd, box + CM_FW_CMD);
	writeq(offset, box + CM_FW_OFFSET);
	writel(length, box + CM_FW_LENGTH);
	writeq(total, box + CM_FW_TOTAL);
	wmb();                       /* the command (and the chunk's data) before the seq that announces it */
	writel(x->seq, box + CM_FW_SEQ);
	spin_unlock_irqrestore(&x->cm->lock, flags);

	deadline = jiffies + msecs_to_jiffies(timeout_ms);
	for (;;) {
		bool done;

		ret = cm_fw_lock(x, &flags);
		if (ret)
			return ret;
		done = readl(box + CM_FW_DONE_SEQ) == x->seq;
		if (done) {
			rmb();       /* the answer after the done_seq that publishes it */
			*status = readl(box + CM_FW_STATUS);
			x->slot = readl(box + CM_FW_SLOT);
			memcpy_fromio(x->message, box + CM_FW_MESSAGE, sizeof(x->message));
		}
		spin_unlock_irqrestore(&x->cm->lock, flags);
		if (done) {
			x->message[sizeof(x->message) - 1] = '\0';
			return 0;
		}
		if (time_after(jiffies, deadline)) {
			dev_warn(&x->cm->pdev->dev, "firmware load: no answer from the card to %s in %u ms\n",
				 cm_fw_cmd_name(cmd), timeout_ms);
			return -ETIMEDOUT;
		}
		if (interruptible) {
			msleep_interruptible(1);
			if (signal_pending(current))
				return -EINTR;
		} else {
			msleep(1);
		}
	}
}

/* The card's status for a refused command, as the errno the ioctl returns (uapi cm.h). */
static int cm_fw_errno(u32 status)
{
	switch (status) {
	case 0:
		return 0;
	case CM_BUS_EBUSY:           /* the running slot is on trial */
		return -EBUSY;
	case CM_BUS_EFBIG:           /* larger than a flash slot */
		return -EFBIG;
	case CM_BUS_EBADMSG:         /* corrupt or truncated image */
		return -EBADMSG;
	case CM_BUS_ENOEXEC:         /* built for another architecture */
		return -ENOEXEC;
	case CM_BUS_EINVAL:
		return -EINVAL;
	case CM_BUS_ENOMEM:
		return -ENOMEM;
	default:                     /* EIO (the flash), EPROTO (the card lost the load), anything else */
		return -EIO;
	}
}

/* Copies image bytes [pos, pos + len) from user space into the data area (len <= data_size). */
static int cm_fw_copy_chunk(struct cm_fw_xfer *x, const u8 __user *image, u64 pos, u32 len)
{
	unsigned long flags;
	u32 done, n;
	int ret;

	for (done = 0; done < len; done += n) {
		n = min_t(u32, len - done, CM_FW_PIECE);
		if (copy_from_user(x->buf, image + pos + done, n))
			return -EFAULT;
		ret = cm_fw_lock(x, &flags);
		if (ret)
			return ret;
		memcpy_toio(x->cm->mem + x->data + done, x->buf, n);
		spin_unlock_irqrestore(&x->cm->lock, flags);
		cond_resched();
	}
	return 0;
}

static int cm_fw_send(struct cm_fw_xfer *x, const u8 __user *image, u64 size)
{
	struct device *dev = &x->cm->pdev->dev;
	u32 status = 0, len;
	u64 pos;
	int ret;

	ret = cm_fw_command(x, CM_BUS_FWLOAD_BEGIN, 0, 0, size, CM_FW_STEP_TIMEOUT_MS, true, &status);
	if (!ret && status) {
		dev_warn(dev, "firmware load refused: %s\n", x->message);
		return cm_fw_errno(status);
	}
	for (pos = 0; !ret && pos < size; pos += len) {
		len = (u32)min_t(u64, size - pos, x->data_size);
		ret = cm_fw_copy_chunk(x, image, pos, len);
		if (!ret)
			ret = cm_fw_command(x, CM_BUS_FWLOAD_CHUNK, pos, len, 0, CM_FW_STEP_TIMEOUT_MS, true, &status);
		if (!ret && status) {
			dev_warn(dev, "firmware load: chunk at %llu refused: %s\n", pos, x->message);
			return cm_fw_errno(status);
		}
	}
	if (!ret)
		ret = cm_fw_command(x, CM_BUS_FWLOAD_COMMIT, 0, 0, 0, CM_FW_COMMIT_TIMEOUT_MS, true, &status);
	if (ret)
		return ret;
	if (status) {
		dev_warn(dev, "firmware load refused: %s\n", x->message);
		return cm_fw_errno(status);
	}
	return 0;
}

static int cm_ioctl_fw_load(struct cm_file *f, void __user *arg)
{
	struct cm_dev *cm = f->cm;
	struct cm_fw_xfer x = { .cm = cm };
	struct cm_fw_load req;
	unsigned long flags;
	ktime_t start;
	u8 first, last;
	u32 status;
	int ret;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.pad || req.size == 0 || req.size > CM_FW_MAX_SIZE)
		return -EINVAL;
	/* the image must be readable (first and last byte), so a bad pointer fails the same on every card */
	if (get_user(first, (u8 __user *)u64_to_user_ptr(req.data)) ||
	    get_user(last, (u8 __user *)u64_to_user_ptr(req.data + req.size - 1)))
		return -EFAULT;
	(void)first;
	(void)last;

	spin_lock_irqsave(&cm->lock, flags);
	if (cm->gone) {
		ret = -ENODEV;
	} else if (!cm_card_alive(cm)) {
		ret = -EIO;
	} else if (cm->ctrl.fwload_size == 0) {
		ret = -EOPNOTSUPP;   /* the card takes no firmware over the bus (not booted from a flash) */
	} else {
		ret = 0;
		x.box = cm->ctrl.fwload_offset;
		x.data = cm->ctrl.fwload_offset + CM_BUS_FWLOAD_HEADER_SIZE;
		x.data_size = cm->ctrl.fwload_size - CM_BUS_FWLOAD_HEADER_SIZE;
		x.format_id = cm->ctrl.format_id;
		x.seq = readl(cm->mem + x.box + CM_FW_DONE_SEQ);
	}
	spin_unlock_irqrestore(&cm->lock, flags);
	if (ret)
		return ret;

	if (!mutex_trylock(&cm->fw_lock))
		return -EBUSY;       /* another load is in progress */
	x.buf = kmalloc(CM_FW_PIECE, GFP_KERNEL);
	if (!x.buf) {
		mutex_unlock(&cm->fw_lock);
		return -ENOMEM;
	}
	start = ktime_get();
	ret = cm_fw_send(&x, u64_to_user_ptr(req.data), req.size);
	if (ret == 0) {
		dev_info(&cm->pdev->dev, "firmware load: %llu bytes in %lld ms: %s\n", req.size,
			 ktime_ms_delta(ktime_get(), start), x.message);
	} else if (ret == -ETIMEDOUT || ret == -EINTR || ret == -EFAULT || ret == -ENOMEM) {
		/* the card may still hold a part of the image: tell it to drop it (it would after 10 s anyway) */
		if (cm_fw_command(&x, CM_BUS_FWLOAD_ABORT, 0, 0, 0, CM_FW_ABORT_TIMEOUT_MS, false, &status) == 0)
			dev_info(&cm->pdev->dev, "firmware load abandoned (%d): the card dropped the image\n", ret);
	}
	kfree(x.buf);
	mutex_unlock(&cm->fw_lock);
	return ret;
}

/* CM_IOC_DOORBELL: the data path's one system call, so it takes only cm->lock (not ioctl_lock). */
static int cm_ioctl_doorbell(struct cm_file *f, void __user *arg)
{
	struct cm_dev *cm = f->cm;
	struct cm_doorbell req;
	unsigned long flags;
	int ret = 0;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags)
		return -EINVAL;
	spin_lock_irqsave(&cm->lock, flags);
	if (cm->gone)
		ret = -ENODEV;
	else if (!cm->valid || req.qp >= cm->ctrl.qp_count || cm->owner[req.qp] != f)
		ret = -EINVAL;
	else if (!cm_has_doorbell(cm))
		ret = -EOPNOTSUPP;
	else if (!cm_card_alive(cm))
		ret = -EIO;
	else
		cm_ring(cm, req.qp);
	spin_unlock_irqrestore(&cm->lock, flags);
	return ret;
}

static int cm_ioctl_counters(struct cm_file *f, void __user *arg)
{
	struct cm_dev *cm = f->cm;
	struct cm_counters cnt;
	unsigned long flags;

	spin_lock_irqsave(&cm->lock, flags);
	cnt = cm->cnt;
	spin_unlock_irqrestore(&cm->lock, flags);
	if (copy_to_user(arg, &cnt, sizeof(cnt)))
		return -EFAULT;
	return 0;
}

static long cm_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct cm_file *f = file->private_data;
	struct cm_dev *cm = f->cm;
	void __user *uarg = (void __user *)arg;
	unsigned long flags;
	int ret;

	if (cmd == CM_IOC_DOORBELL) {
		ret = cm_ioctl_doorbell(f, uarg);
		goto counted;
	}
	mutex_lock(&cm->ioctl_lock);
	spin_lock_irqsave(&cm->lock, flags);
	ret = cm->gone ? -ENODEV : 0;
	spin_unlock_irqrestore(&cm->lock, flags);
	if (ret)
		goto out;

	switch (cmd) {
	case CM_IOC_INFO:
		ret = cm_ioctl_info(f, uarg);
		break;
	case CM_IOC_ATTACH:
		ret = cm_ioctl_attach(f, uarg);
		break;
	case CM_IOC_DETACH:
		ret = cm_ioctl_detach(f, uarg);
		break;
	case CM_IOC_WAIT:
		/* sleeps: let the other ioctls through meanwhile */
		mutex_unlock(&cm->ioctl_lock);
		ret = cm_ioctl_wait(f, uarg);
		goto counted;
	case CM_IOC_RESET:
		ret = cm_ioctl_reset(f);
		break;
	case CM_IOC_FW_LOAD:
		/* takes seconds: let the other ioctls through meanwhile (cm->fw_lock serializes loads) */
		mutex_unlock(&cm->ioctl_lock);
		ret = cm_ioctl_fw_load(f, uarg);
		goto counted;
	case CM_IOC_COUNTERS:
		ret = cm_ioctl_counters(f, uarg);
		break;
	default:
		ret = -ENOTTY;
		break;
	}
out:
	mutex_unlock(&cm->ioctl_lock);
counted:
	if (ret == -EINVAL || ret == -ENOTTY) {
		spin_lock_irqsave(&cm->lock, flags);
		cm->cnt.bad_ioctls++;
		spin_unlock_irqrestore(&cm->lock, flags);
	}
	return ret;
}

/* ---- File operations --------------------------------------------------------------------------------- */

static void cm_dev_free(struct kref *ref)
{
	struct cm_dev *cm = container_of(ref, struct cm_dev, ref);

	ida_free(&cm_ida, cm->id);
	kfree(cm);
}

static int cm_open(struct inode *inode, struct file *file)
{
	struct cm_dev *cm = container_of(file->private_data, struct cm_dev, misc);
	struct cm_file *f;
	unsigned long flags;

	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	spin_lock_irqsave(&cm->lock, flags);
	if (cm->gone) {
		spin_unlock_irqrestore(&cm->lock, flags);
		kfree(f);
		return -ENODEV;
	}
	kref_get(&cm->ref);
	cm->cnt.opens++;
	spin_unlock_irqrestore(&cm->lock, flags);
	f->cm = cm;
	file->private_data = f;
	return 0;
}

/* Releases the file's queue pairs: this runs on close, and on exit or death of the process. */
static int cm_release(struct inode *inode, struct file *file)
{
	struct cm_file *f = file->private_data;
	struct cm_dev *cm = f->cm;
	unsigned long flags;
	u32 q;

	spin_lock_irqsave(&cm->lock, flags);
	for (q = 0; q < CM_BUS_MAX_QPS; q++) {
		if (cm->owner[q] != f)
			continue;
		cm_release_qp(cm, q);
		cm->cnt.released++;
	}
	spin_unlock_irqrestore(&cm->lock, flags);
	kfree(f);
	kref_put(&cm->ref, cm_dev_free);
	return 0;
}

static __poll_t cm_poll(struct file *file, poll_table *wait)
{
	struct cm_file *f = file->private_data;
	struct cm_dev *cm = f->cm;
	u32 ready;
	int r;

	poll_wait(file, &cm->wq, wait);
	r = cm_file_ready(f, CM_WAIT_ANY, &ready);
	if (r == -ENODEV)
		return EPOLLERR | EPOLLHUP;
	if (r == -EIO)
		return EPOLLERR;
	if (r > 0)
		return EPOLLIN | EPOLLRDNORM;
	if (r == 0)
		cm_arm_timer(cm);
	return 0;
}

/*
 * Maps the bus memory (BAR2) into the process, so the data path needs no system call.
 *
 * Checks first, as uio_mmap_physical() does: a shared mapping only (a private copy-on-write copy of
 * device memory would silently stop being the bus), an offset and a length inside the validated bus
 * memory (total_size, which is page aligned and <= the BAR). The offset is in pages, so it is aligned.
 *
 * Uncached (pgprot_noncached), like uio: the rings are shared with the card and libcm uses atomic
 * read-modify-write (the need_wakeup exchange) and fences on the ring indices; on x86 locked operations
 * and ordering are defined for UC device memory but not for write-combining. On QEMU's ivshmem the BAR is
 * host RAM and TCG ignores the memory type, so this costs nothing there. VM_IO | VM_PFNMAP (set by
 * io_remap_pfn_range): no struct pages, never dumped, never expanded by mremap.
 */
static int cm_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct cm_file *f = file->private_data;
	struct cm_dev *cm = f->cm;
	unsigned long len = vma->vm_end - vma->vm_start;
	unsigned long flags;
	u64 off, size = 0;
	int ret = 0;

	off = (u64)vma->vm_pgoff << PAGE_SHIFT;
	spin_lock_irqsave(&cm->lock, flags);
	if (cm->gone)
		ret = -ENODEV;
	else if (!cm->valid)
		ret = -EIO;
	else
		size = cm->ctrl.total_size;
	spin_unlock_irqrestore(&cm->lock, flags);
	if (ret)
		return ret;
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (off >= size || len > size - off)
		return -EINVAL;

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	vm_flags_set(vma, VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
#else
	vma->vm_flags |= VM_IO | VM_DONTEXPAND | VM_DONTDUMP;
#endif
	vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
	ret = io_remap_pfn_range(vma, vma->vm_start, (cm->mem_phys + off) >> PAGE_SHIFT, len,
				 vma->vm_page_prot);
	if (ret)
		return ret;
	spin_lock_irqsave(&cm->lock, flags);
	cm->cnt.mmaps++;
	spin_unlock_irqrestore(&cm->lock, flags);
	return 0;
}

static const struct file_operations cm_fops = {
	.owner = THIS_MODULE,
	.open = cm_open,
	.release = cm_release,
	.unlocked_ioctl = cm_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.poll = cm_poll,
	.mmap = cm_mmap,
	.llseek = noop_llseek,
};

/* ---- Probe and remove ------------------------------------------------------------------------------- */

static int cm_setup_irqs(struct cm_dev *cm)
{
	struct pci_dev *pdev = cm->pdev;
	int nvec, i, ret;

	if (!use_msix || !pdev->msix_cap)
		return 0;
	nvec = pci_alloc_irq_vectors(pdev, 1, cm->ctrl.qp_count, PCI_IRQ_MSIX);
	if (nvec < 0)
		return 0;  /* polling fallback */
	for (i = 0; i < nvec; i++) {
		ret = request_irq(pci_irq_vector(pdev, i), cm_irq, 0, cm->name, cm);
		if (ret)
			goto err_free_irqs;
	}
	cm->nvec = nvec;
	return 0;

err_free_irqs:
	while (--i >= 0)
		free_irq(pci_irq_vector(pdev, i), cm);
	pci_free_irq_vectors(pdev);
	return ret;
}

static void cm_free_irqs(struct cm_dev *cm)
{
	int i;

	for (i = 0; i < cm->nvec; i++)
		free_irq(pci_irq_vector(cm->pdev, i), cm);
	if (cm->nvec)
		pci_free_irq_vectors(cm->pdev);
	cm->nvec = 0;
}

static int cm_probe(struct pci_dev *pdev, const struct pci_device_id *ent)
{
	struct cm_dev *cm;
	int ret;

	if (pci_resource_len(pdev, CM_IVSHMEM_MEM_BAR) < CM_BUS_CTRL_SIZE ||
	    !(pci_resource_flags(pdev, CM_IVSHMEM_MEM_BAR) & IORESOURCE_MEM))
		return -ENODEV;

	cm = kzalloc(sizeof(*cm), GFP_KERNEL);
	if (!cm)
		return -ENOMEM;
	kref_init(&cm->ref);
	mutex_init(&cm->ioctl_lock);
	mutex_init(&cm->fw_lock);
	spin_lock_init(&cm->lock);
	init_waitqueue_head(&cm->wq);
	hrtimer_init(&cm->timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	cm->timer.function = cm_timer;
	cm->pdev = pdev;
	cm->board = ent->driver_data;
	cm->id = ida_alloc(&cm_ida, GFP_KERNEL);
	if (cm->id < 0) {
		ret = cm->id;
		kfree(cm);
		return ret;
	}
	snprintf(cm->name, sizeof(cm->name), DRV_NAME "%d", cm->id);

	ret = pci_enable_device(pdev);
	if (ret)
		goto err_put;
	ret = pci_request_regions(pdev, DRV_NAME);
	if (ret)
		goto err_disable;

	cm->mem_phys = pci_resource_start(pdev, CM_IVSHMEM_MEM_BAR);
	cm->mem_len = pci_resource_len(pdev, CM_IVSHMEM_MEM_BAR);
	cm->mem = pci_iomap(pdev, CM_IVSHMEM_MEM_BAR, 0);
	if (!cm->mem) {
		ret = -ENOMEM;
		goto err_release;
	}
	if (pci_resource_len(pdev, CM_IVSHMEM_REG_BAR))
		cm->regs = pci_iomap(pdev, CM_IVSHMEM_REG_BAR, 0);

	/* Not cm's memory (another ivshmem user, or the card not formatted yet): leave the device alone. */
	ret = cm_load_ctrl(cm);
	if (ret) {
		if (ret == -ENODEV)
			dev_info(&pdev->dev, "no cm bus in BAR2, not binding\n");
		goto err_unmap;
	}

	pci_set_master(pdev);
	ret = cm_setup_irqs(cm);
	if (ret)
		goto err_unmap;

	cm->misc.minor = MISC_DYNAMIC_MINOR;
	cm->misc.name = cm->name;
	cm->misc.fops = &cm_fops;
	cm->misc.parent = &pdev->dev;
	cm->misc.mode = 0600;
	pci_set_drvdata(pdev, cm);
	ret = misc_register(&cm->misc);
	if (ret)
		goto err_free_irqs;

	dev_info(&pdev->dev, "/dev/%s: firmware %s, bus ABI %u.%u, %llu bytes, %u queue pairs, %s\n", cm->name,
		 cm->ctrl.fw_version_str, cm->ctrl.abi_version >> 16, cm->ctrl.abi_version & 0xffff,
		 cm->ctrl.total_size, cm->ctrl.qp_count, cm->nvec ? "MSI-X" : "polling");
	return 0;

err_free_irqs:
	cm_free_irqs(cm);
err_unmap:
	if (cm->regs)
		pci_iounmap(pdev, cm->regs);
	pci_iounmap(pdev, cm->mem);
err_release:
	pci_release_regions(pdev);
err_disable:
	pci_disable_device(pdev);
err_put:
	kref_put(&cm->ref, cm_dev_free);
	return ret;
}

static void cm_remove(struct pci_dev *pdev)
{
	struct cm_dev *cm = pci_get_drvdata(pdev);
	unsigned long flags;

	misc_deregister(&cm->misc);
	/* open files stay (they hold a reference) but may no longer touch the BAR */
	spin_lock_irqsave(&cm->lock, flags);
	cm->gone = true;
	spin_unlock_irqrestore(&cm->lock, flags);
	wake_up_interruptible_all(&cm->wq);
	hrtimer_cancel(&cm->timer);
	cm_free_irqs(cm);
	if (cm->regs)
		pci_iounmap(pdev, cm->regs);
	pci_iounmap(pdev, cm->mem);
	pci_release_regions(pdev);
	pci_disable_device(pdev);
	kref_put(&cm->ref, cm_dev_free);
}

static const struct pci_device_id cm_ids[] = {
	/* QEMU ivshmem carrying the emulated card's bus memory; probe checks BAR2 before binding */
	{ PCI_DEVICE(PCI_VENDOR_ID_REDHAT_QUMRANET, PCI_DEVICE_ID_IVSHMEM), .driver_data = CM_BOARD_IVSHMEM },
	/*
	 * Reserved for the real card (CM_BOARD_CARD): same bus ABI in BAR2, MSI-X vector q = queue pair q.
	 * Its vendor/device ID is not assigned yet:
	 * { PCI_DEVICE(PCI_VENDOR_ID_CM, PCI_DEVICE_ID_CM_CARD), .driver_data = CM_BOARD_CARD },
	 */
	{ }
};
MODULE_DEVICE_TABLE(pci, cm_ids);

static struct pci_driver cm_pci_driver = {
	.name = DRV_NAME,
	.id_table = cm_ids,
	.probe = cm_probe,
	.remove = cm_remove,
};
module_pci_driver(cm_pci_driver);

MODULE_DESCRIPTION("cm connection-offload card");
MODULE_AUTHOR("cm project");
MODULE_LICENSE("Dual MIT/GPL");
