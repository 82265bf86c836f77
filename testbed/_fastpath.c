/*
 * The engine's compiled fast path (issue 15): the hooks Unicorn calls at every decision
 * (stop before a visible operation; log each block and count the budget) in C, and the
 * run call with the log handed back to Python in one go.
 *
 * Through the Python binding each of those hooks was a ctypes callback (about 250 ns
 * each, two or three per decision) and each uc_emu_start a ctypes call (about 1 us).
 * Here the hooks are C functions registered with uc_hook_add (testbed/fastpath.py) and
 * run() is one METH_FASTCALL call that also turns the blocks logged into the
 * (step, start, end) tuples of Cpu.log.
 *
 * The block hook also hooks code as it first runs (hook_block), as cpu._block_hook does
 * on the pure path: a block holding visible words without a code hook gets hooks for
 * them and the run starts again from it (run_cpu).
 *
 * No Unicorn header or library is linked: the binding's own uc_emu_start and
 * uc_emu_stop are passed in as addresses, so the module builds with any C compiler and
 * only Python's headers.  testbed/cpu.py's pure-Python hooks do exactly the same and
 * are the fallback; tests/test_corpus.py replays the corpus through both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int (*emu_start_fn)(void *uc, uint64_t begin, uint64_t until, uint64_t timeout,
                            size_t count);
typedef int (*emu_stop_fn)(void *uc);
typedef int (*reg_read_batch_fn)(void *uc, int *ids, void **vals, int count);
typedef int (*reg_read_fn)(void *uc, int id, void *value);
typedef int (*reg_write_fn)(void *uc, int id, const void *value);
typedef int (*ctx_alloc_fn)(void *uc, void **context);
typedef int (*ctx_fn)(void *uc, void *context);
typedef int (*ctx_free_fn)(void *context);
typedef size_t (*ctx_size_fn)(void *uc);
typedef int (*ctl_fn)(void *uc, int control, ...);
typedef int (*hook_add_fn)(void *uc, size_t *hh, int type, void *callback, void *user_data,
                           uint64_t begin, uint64_t end, ...);

/* AArch64's coprocessor register of the binding (uc_arm64_cp_reg) */
typedef struct {
    uint32_t crn, crm, op0, op1, op2;
    uint64_t val;
} cp_reg;

#define MAX_KEY_REGS 64
#define MAX_PRIVATE 16

enum { STOP_NONE = 0, STOP_VISIBLE = 1, STOP_HOOKED = 3 };

typedef struct {
    void *uc;
    emu_start_fn start;
    emu_stop_fn stop;
    uint64_t text_base;
    uint64_t nwords;
    const uint8_t *kinds; /* per text word, its kind now (0: invisible): KindTable */
    int64_t skip;         /* the hooked address to let through once */
    int64_t pc;           /* where the code hook stopped the CPU */
    int reason;           /* STOP_VISIBLE if the code hook stopped it */
    int64_t left;         /* instructions the run may still execute */
    int64_t step;         /* the machine's step number, for the log */
    int64_t *log;         /* (step, start, end) triples not yet handed to Python */
    Py_ssize_t len, cap;  /* in triples */
    int overflow;         /* the log could not grow: the run was stopped */
    /* State handling (state keys, save and load of a search; fp_state): */
    reg_read_batch_fn reg_read_batch;
    reg_read_fn reg_read;
    reg_write_fn reg_write;
    ctx_fn ctx_save, ctx_restore;
    ctx_free_fn ctx_free;
    void *ctx;           /* a scratch context: saved into, copied out; copied in, restored */
    size_t ctx_size;     /* its whole size (uc_context_size), header included */
    int cp_id;           /* UC_ARM64_REG_CP_REG */
    int nregs;           /* the registers regs() reads, in order */
    int ids[MAX_KEY_REGS];
    uint64_t values[MAX_KEY_REGS];
    void *ptrs[MAX_KEY_REGS];
    /* Private data (Machine.set_private; set_private): the CPU's I-view, its private
     * ranges [lo, hi), and Unicorn's ids of X0..X30 */
    const uint8_t *iview;
    int npriv;
    uint64_t priv_lo[MAX_PRIVATE], priv_hi[MAX_PRIVATE];
    int xreg[31];
    /* uc_ctl and the control word of UC_CTL_TB_REMOVE_CACHE (set_ctl; remove_cache) */
    ctl_fn ctl;
    int remove_code;
    /* Code hooked as it first runs (lazy(); block_hook): uc_hook_add, UC_HOOK_CODE,
     * UC_ARM64_REG_PC, and per text word whether a code hook covers it */
    hook_add_fn hook_add;
    int code_type, pc_id;
    uint8_t *hooked;
    int stepping;    /* this run is a single step (count 1): hook its blocks, run on */
    int hook_status; /* uc_hook_add's or uc_ctl's error in the block hook, else 0 */
} fast_cpu;

/* isa.plain_address: how a plain general-register load or store computes its
 * address; 0 for every other form. */
typedef struct {
    int rn, rm, option, shift;
    int64_t disp;
    uint64_t nbytes;
} plain_plan;

static int plain_address(uint32_t word, plain_plan *p) {
    int rn = (word >> 5) & 31, rt = word & 31;
    if (((word >> 25) & 5) != 4 || ((word >> 26) & 1) || rn == 31)
        return 0;
    int size = word >> 30, opc = (word >> 22) & 3, group = (word >> 27) & 7;
    p->rn = rn;
    p->rm = -1;
    p->option = p->shift = 0;
    if (group == 5) { /* pairs */
        int load = (word >> 22) & 1, mode = (word >> 23) & 3, rt2 = (word >> 10) & 31;
        if ((size == 1 && !(load && mode)) || size == 3)
            return 0;
        if ((load && rt == rt2) || ((mode & 1) && (rn == rt || rn == rt2)))
            return 0;
        int esize = size == 2 ? 8 : 4;
        int imm7 = (word >> 15) & 0x7F;
        p->disp = mode == 1 ? 0 : (int64_t)(imm7 & 0x40 ? imm7 - 128 : imm7) * esize;
        p->nbytes = 2 * (uint64_t)esize;
        return 1;
    }
    if (group != 7)
        return 0;
    if (!(opc < 2 || (opc == 2 && size < 3) || (opc == 3 && size < 2)))
        return 0;
    p->nbytes = (uint64_t)1 << size;
    if ((word >> 24) & 1) {
        p->disp = (int64_t)(((word >> 10) & 0xFFF) << size);
        return 1;
    }
    if (!((word >> 21) & 1)) {
        int mode = (word >> 10) & 3;
        if (mode == 2 || ((mode & 1) && rn == rt))
            return 0;
        int imm9 = (word >> 12) & 0x1FF;
        p->disp = mode == 1 ? 0 : (imm9 & 0x100 ? imm9 - 512 : imm9);
        return 1;
    }
    if (((word >> 10) & 3) != 2)
        return 0;
    int option = (word >> 13) & 7;
    if (option != 2 && option != 3 && option != 6 && option != 7)
        return 0;
    p->disp = 0;
    p->rm = (word >> 16) & 31;
    p->option = option;
    p->shift = ((word >> 12) & 1) ? size : 0;
    return 1;
}

/* isa.plain_ea */
static uint64_t plain_ea(const plain_plan *p, uint64_t base, uint64_t index) {
    uint64_t ea = base + (uint64_t)p->disp;
    if (p->rm >= 0) {
        if (p->option == 2)
            index &= 0xFFFFFFFFULL;
        else if (p->option == 6)
            index = (uint64_t)(int64_t)(int32_t)(uint32_t)index;
        ea += index << p->shift;
    }
    return ea;
}

/* Whether the access at ``addr`` (a MEMORY word) is a plain one wholly inside one of
 * the CPU's private ranges: then it is no visible operation (cpu.py's _own). */
static int own_private(fast_cpu *c, void *uc, uint64_t addr) {
    uint64_t off = addr - c->text_base;
    uint32_t word;
    memcpy(&word, c->iview + off, 4); /* (little-endian host, as the I-view) */
    plain_plan p;
    if (!plain_address(word, &p))
        return 0;
    uint64_t base = 0, index = 0;
    if (c->reg_read(uc, c->xreg[p.rn], &base) != 0)
        return 0;
    if (p.rm >= 0 && p.rm != 31 && c->reg_read(uc, c->xreg[p.rm], &index) != 0)
        return 0;
    uint64_t ea = plain_ea(&p, base, index);
    for (int i = 0; i < c->npriv; i++)
        if (ea >= c->priv_lo[i] && ea + p.nbytes > ea && ea + p.nbytes <= c->priv_hi[i])
            return 1;
    return 0;
}

static const char CAPSULE[] = "testbed._fastpath.cpu";

static void code_hook(void *uc, uint64_t addr, uint32_t size, void *user) {
    fast_cpu *c = (fast_cpu *)user;
    (void)size;
    if ((int64_t)addr == c->skip) {
        c->skip = -1;
        return;
    }
    uint64_t w = (addr - c->text_base) >> 2;
    if (w < c->nwords && c->kinds[w]) {
        if (c->kinds[w] == 1 && c->npriv && own_private(c, uc, addr)) /* OpKind.MEMORY */
            return;
        c->pc = (int64_t)addr;
        c->reason = STOP_VISIBLE;
        c->stop(uc);
    }
}

/* Hook the code at words [w0, w1) of the text (the caller's range is inside it): one
 * code hook over the range, its words marked hooked.  0, or Unicorn's error. */
static int add_code_hook(fast_cpu *c, uint64_t w0, uint64_t w1) {
    size_t handle;
    int status = c->hook_add(c->uc, &handle, c->code_type, (void *)(uintptr_t)code_hook, c,
                             c->text_base + 4 * w0, c->text_base + 4 * w1 - 1);
    if (status == 0)
        memset(c->hooked + w0, 1, (size_t)(w1 - w0));
    return status;
}

/* cpu._block_hook's "code hooked as it first runs", for a block of ``n`` words from
 * word ``w0``: each run of its words with a kind now and no code hook gets one, and
 * the block's translation is dropped so that the next one has the hooks.  Returns
 * whether it hooked anything, or -1 with c->hook_status set.  (The words of kind 0
 * need none: the code hook does nothing there but let a skip through, and a skip
 * left unused ends with the run.) */
static int hook_block(fast_cpu *c, uint64_t w0, uint64_t n) {
    int added = 0;
    uint64_t w = w0, end = w0 + n;
    while (w < end) {
        if (!c->kinds[w] || c->hooked[w]) {
            w++;
            continue;
        }
        uint64_t lo = w;
        while (w < end && c->kinds[w] && !c->hooked[w])
            w++;
        int status = add_code_hook(c, lo, w);
        if (status != 0) {
            c->hook_status = status;
            return -1;
        }
        added = 1;
    }
    if (added) {
        uint64_t begin = c->text_base + 4 * w0;
        int status = c->ctl(c->uc, c->remove_code, begin, begin + 4 * n);
        if (status != 0) {
            c->hook_status = status;
            return -1;
        }
    }
    return added;
}

static void block_hook(void *uc, uint64_t addr, uint32_t size, void *user) {
    fast_cpu *c = (fast_cpu *)user;
    if (c->hooked != NULL) {
        uint64_t w0 = (addr - c->text_base) >> 2, n = size >> 2;
        if (w0 < c->nwords) {
            if (n > c->nwords - w0)
                n = c->nwords - w0;
            int added = hook_block(c, w0, n);
            if (added < 0) {
                c->stop(uc);
                return;
            }
            if (added && !c->stepping) { /* run again from addr (the PC register) */
                c->reason = STOP_HOOKED;
                c->stop(uc);
                return;
            }
        }
    }
    if (c->len == c->cap) {
        Py_ssize_t cap = c->cap ? 2 * c->cap : 1024;
        int64_t *log = realloc(c->log, (size_t)cap * 3 * sizeof(int64_t));
        if (log == NULL) {
            c->overflow = 1;
            c->stop(uc);
            return;
        }
        c->log = log;
        c->cap = cap;
    }
    int64_t *e = c->log + 3 * c->len++;
    e[0] = c->step;
    e[1] = (int64_t)addr;
    e[2] = (int64_t)addr + size;
    c->left -= size >> 2;
    if (c->left < 0)
        c->stop(uc);
}

static void cpu_free(PyObject *capsule) {
    fast_cpu *c = PyCapsule_GetPointer(capsule, CAPSULE);
    if (c != NULL) {
        if (c->ctx != NULL && c->ctx_free != NULL)
            c->ctx_free(c->ctx);
        free(c->hooked);
        free(c->log);
        free(c);
    }
}

static fast_cpu *get(PyObject *capsule) {
    return (fast_cpu *)PyCapsule_GetPointer(capsule, CAPSULE);
}

/* new(uc, start, stop, text_base, kinds_address, nwords) -> capsule */
static PyObject *fp_new(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "new() takes 6 arguments");
        return NULL;
    }
    fast_cpu *c = calloc(1, sizeof(fast_cpu));
    if (c == NULL)
        return PyErr_NoMemory();
    c->uc = PyLong_AsVoidPtr(args[0]);
    c->start = (emu_start_fn)PyLong_AsVoidPtr(args[1]);
    c->stop = (emu_stop_fn)PyLong_AsVoidPtr(args[2]);
    c->text_base = PyLong_AsUnsignedLongLong(args[3]);
    c->kinds = (const uint8_t *)PyLong_AsVoidPtr(args[4]);
    c->nwords = PyLong_AsUnsignedLongLong(args[5]);
    c->skip = -1;
    if (PyErr_Occurred()) {
        free(c);
        return NULL;
    }
    PyObject *capsule = PyCapsule_New(c, CAPSULE, cpu_free);
    if (capsule == NULL)
        free(c);
    return capsule;
}

/* address(capsule) -> the struct's address: the hooks' user data */
static PyObject *fp_address(PyObject *self, PyObject *capsule) {
    (void)self;
    fast_cpu *c = get(capsule);
    return c == NULL ? NULL : PyLong_FromVoidPtr(c);
}

/* block_hook() -> the block hook's address (the code hooks are added here, in C:
 * hook_block, fp_hook) */
static PyObject *fp_block_hook(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyLong_FromVoidPtr((void *)(uintptr_t)block_hook);
}

/* Hand the logged blocks to Python: append (step, start, end) tuples to ``log``. */
static int flush(fast_cpu *c, PyObject *log) {
    for (Py_ssize_t i = 0; i < c->len; i++) {
        int64_t *e = c->log + 3 * i;
        PyObject *t = Py_BuildValue("(LLL)", (long long)e[0], (long long)e[1],
                                    (long long)e[2]);
        if (t == NULL || PyList_Append(log, t) < 0) {
            Py_XDECREF(t);
            return -1;
        }
        Py_DECREF(t);
    }
    c->len = 0;
    return 0;
}

static PyObject *fp_flush(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "flush(cpu, log: list)");
        return NULL;
    }
    fast_cpu *c = get(args[0]);
    if (c == NULL || flush(c, args[1]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* One run of the CPU (the body of start()): uc_emu_start with the hooks' state set,
 * the last block cut where the code hook stopped the CPU, the blocks logged appended
 * to ``log``.  Returns 0 and sets *status (Unicorn's error code) and *stopped (see
 * start()), or -1 with a Python error set. */
static int run_cpu(fast_cpu *c, uint64_t begin, uint64_t until, uint64_t count, int64_t skip,
                   int64_t left, int64_t step, PyObject *log, int *status, int *stopped) {
    c->skip = skip;
    c->left = left;
    c->step = step;
    c->reason = STOP_NONE;
    c->overflow = 0;
    c->stepping = count == 1;
    c->hook_status = 0;
    for (;;) {
        *status = c->start(c->uc, begin, until, 0, (size_t)count);
        if (c->reason != STOP_HOOKED)
            break;
        /* A block's code hooked (block_hook): run again from it, through its new
         * translation, with the skip and the budget as they are (execute._run's
         * ``again``). */
        c->reason = STOP_NONE;
        if (*status != 0)
            break;
        uint64_t pc = 0;
        if (c->reg_read(c->uc, c->pc_id, &pc) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "could not read the PC to run on from");
            return -1;
        }
        begin = pc;
    }
    if (c->hook_status != 0) {
        PyErr_Format(PyExc_RuntimeError, "could not hook code as it ran (Unicorn error %d)",
                     c->hook_status);
        c->len = 0;
        return -1;
    }
    if (c->reason == STOP_VISIBLE && c->len > 0) {
        /* The last block ends where the CPU stopped (execute._run's cut, here). */
        int64_t *e = c->log + 3 * (c->len - 1);
        if (e[1] == c->pc)
            c->len--;
        else if (e[1] < c->pc && c->pc < e[2])
            e[2] = c->pc;
    } else if (c->reason == STOP_VISIBLE) {
        c->reason = 2; /* stopped before logging a block: Python cuts its log */
    }
    *stopped = c->reason;
    if (flush(c, log) < 0)
        return -1;
    if (c->overflow) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* start(cpu, begin, until, count, skip, left, step, log) -> (status, stopped, pc)
 *
 * ``stopped``: 0 if the code hook did not stop the CPU; 1 if it did, and the last block
 * logged is cut where it stopped (execute._run's cut); 2 if it did before this run
 * logged any block (the caller cuts the entry before).
 *
 * uc_emu_start with the hooks' state set (the GIL stays held: the machine's other
 * hooks are Python), then the blocks logged appended to ``log``.  ``status`` is
 * Unicorn's error code (0: none); MemoryError if the log could not grow.
 */
static PyObject *fp_start(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 8 || !PyList_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError,
                        "start(cpu, begin, until, count, skip, left, step, log: list)");
        return NULL;
    }
    fast_cpu *c = get(args[0]);
    if (c == NULL)
        return NULL;
    uint64_t begin = PyLong_AsUnsignedLongLong(args[1]);
    uint64_t until = PyLong_AsUnsignedLongLong(args[2]);
    uint64_t count = PyLong_AsUnsignedLongLong(args[3]);
    int64_t skip = PyLong_AsLongLong(args[4]);
    int64_t left = PyLong_AsLongLong(args[5]);
    int64_t step = PyLong_AsLongLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    int status, stopped;
    if (run_cpu(c, begin, until, count, skip, left, step, args[7], &status, &stopped) < 0)
        return NULL;
    return Py_BuildValue("(iiL)", status, stopped, (long long)c->pc);
}

/* state(cpu, reg_read_batch, reg_read, reg_write, context_alloc, context_save, context_restore,
 *       context_free, context_size, cp_reg_id, key_reg_ids: tuple) -> None
 *
 * Enable regs(), spsr(), save() and restore() on ``cpu``: the binding's functions by
 * address, as for new().  Through ctypes each of these was a foreign call of about a
 * microsecond (the binding's context_save, a Python object too: about four); a search
 * makes several per transition. */
static PyObject *fp_state(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 11 || !PyTuple_Check(args[10])) {
        PyErr_SetString(PyExc_TypeError, "state() takes 11 arguments, the last a tuple");
        return NULL;
    }
    fast_cpu *c = get(args[0]);
    if (c == NULL)
        return NULL;
    if (c->ctx != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "state() already set");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args[10]);
    if (n > MAX_KEY_REGS) {
        PyErr_SetString(PyExc_ValueError, "too many registers");
        return NULL;
    }
    c->reg_read_batch = (reg_read_batch_fn)PyLong_AsVoidPtr(args[1]);
    c->reg_read = (reg_read_fn)PyLong_AsVoidPtr(args[2]);
    c->reg_write = (reg_write_fn)PyLong_AsVoidPtr(args[3]);
    ctx_alloc_fn alloc = (ctx_alloc_fn)PyLong_AsVoidPtr(args[4]);
    c->ctx_save = (ctx_fn)PyLong_AsVoidPtr(args[5]);
    c->ctx_restore = (ctx_fn)PyLong_AsVoidPtr(args[6]);
    c->ctx_free = (ctx_free_fn)PyLong_AsVoidPtr(args[7]);
    ctx_size_fn size = (ctx_size_fn)PyLong_AsVoidPtr(args[8]);
    c->cp_id = (int)PyLong_AsLong(args[9]);
    for (Py_ssize_t i = 0; i < n; i++) {
        c->ids[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(args[10], i));
        c->ptrs[i] = &c->values[i];
    }
    if (PyErr_Occurred())
        return NULL;
    c->nregs = (int)n;
    c->ctx_size = size(c->uc);
    void *ctx = NULL;
    if (alloc(c->uc, &ctx) != 0 || ctx == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "uc_context_alloc failed");
        return NULL;
    }
    c->ctx = ctx;
    Py_RETURN_NONE;
}

static fast_cpu *get_state(PyObject *capsule) {
    fast_cpu *c = get(capsule);
    if (c != NULL && c->ctx == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "state() was not called");
        return NULL;
    }
    return c;
}

static PyObject *uc_error(int status) {
    return PyErr_Format(PyExc_RuntimeError, "Unicorn error %d", status);
}

/* regs(cpu) -> the key registers' 64-bit values, as bytes (emulator.register_reader) */
static PyObject *fp_regs(PyObject *self, PyObject *capsule) {
    (void)self;
    fast_cpu *c = get_state(capsule);
    if (c == NULL)
        return NULL;
    memset(c->values, 0, sizeof(c->values));
    int status = c->reg_read_batch(c->uc, c->ids, c->ptrs, c->nregs);
    if (status != 0)
        return uc_error(status);
    return PyBytes_FromStringAndSize((const char *)c->values,
                                     (Py_ssize_t)c->nregs * (Py_ssize_t)sizeof(uint64_t));
}

/* read(cpu, reg) -> one 64-bit register (emulator.Registers.read) */
static PyObject *fp_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read(cpu, reg)");
        return NULL;
    }
    fast_cpu *c = get_state(args[0]);
    if (c == NULL)
        return NULL;
    int reg = (int)PyLong_AsLong(args[1]);
    if (reg == -1 && PyErr_Occurred())
        return NULL;
    uint64_t value = 0; /* registers narrower than 64 bits fill only their bytes */
    int status = c->reg_read(c->uc, reg, &value);
    if (status != 0)
        return uc_error(status);
    return PyLong_FromUnsignedLongLong(value);
}

/* write(cpu, reg, value) -> None (emulator.Registers.write) */
static PyObject *fp_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "write(cpu, reg, value)");
        return NULL;
    }
    fast_cpu *c = get_state(args[0]);
    if (c == NULL)
        return NULL;
    int reg = (int)PyLong_AsLong(args[1]);
    uint64_t value = PyLong_AsUnsignedLongLongMask(args[2]);
    if (PyErr_Occurred())
        return NULL;
    int status = c->reg_write(c->uc, reg, &value);
    if (status != 0)
        return uc_error(status);
    Py_RETURN_NONE;
}

/* spsr(cpu) -> SPSR_EL1 (emulator.cp_reader(uc, 3, 0, 4, 0, 0)) */
static PyObject *fp_spsr(PyObject *self, PyObject *capsule) {
    (void)self;
    fast_cpu *c = get_state(capsule);
    if (c == NULL)
        return NULL;
    cp_reg r = {4, 0, 3, 0, 0, 0};
    int status = c->reg_read(c->uc, c->cp_id, &r);
    if (status != 0)
        return uc_error(status);
    return PyLong_FromUnsignedLongLong(r.val);
}

/* save(cpu) -> the CPU's context (uc_context_save), as bytes restore() takes back */
static PyObject *fp_save(PyObject *self, PyObject *capsule) {
    (void)self;
    fast_cpu *c = get_state(capsule);
    if (c == NULL)
        return NULL;
    int status = c->ctx_save(c->uc, c->ctx);
    if (status != 0)
        return uc_error(status);
    return PyBytes_FromStringAndSize((const char *)c->ctx, (Py_ssize_t)c->ctx_size);
}

/* restore(cpu, context: bytes from save(cpu)) -> None (uc_context_restore) */
static PyObject *fp_restore(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "restore(cpu, context: bytes)");
        return NULL;
    }
    fast_cpu *c = get_state(args[0]);
    if (c == NULL)
        return NULL;
    if ((size_t)PyBytes_GET_SIZE(args[1]) != c->ctx_size) {
        PyErr_SetString(PyExc_ValueError, "not a context of this CPU");
        return NULL;
    }
    memcpy(c->ctx, PyBytes_AS_STRING(args[1]), c->ctx_size);
    int status = c->ctx_restore(c->uc, c->ctx);
    if (status != 0)
        return uc_error(status);
    Py_RETURN_NONE;
}

/* -- the walker: a random walk's commonest decisions, in C ----------------------------
 *
 * scheduler.run under strategies.RandomWalk, sc, folded steps (fastpath.walker says
 * when): while the next decision is a step of a CPU stopped before a memory access or
 * a fetch of a word stores touched, it is drawn and performed here, exactly as
 * RandomWalk.choose, Machine.apply, Machine._step_folded, execute.step and
 * execute._run do it in Python; at the first decision that is anything else the walk
 * returns before drawing it, and Python takes it.  A run that does not end as the
 * common case does (before a visible operation, not a foldable one, no error) is handed
 * to Machine._walked, which finishes it as execute._run would.
 *
 * The draws are the random.Random's own: its Mersenne Twister state is read in place
 * (CPython's RandomObject: an int index, then 624 words), peeked without consuming,
 * and consumed only when the decision is taken here.  A draw that needs the state
 * regenerated is left to Python.  fastpath.walker checks the layout on a Random of
 * its own (rng_peek) before it walks. */

#define MT_N 624

typedef struct {
    PyObject_HEAD
    int index;
    uint32_t state[MT_N];
} mt_object;

static inline uint32_t temper(uint32_t y) {
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= (y >> 18);
    return y;
}

/* isa.is_cmodx */
static int is_cmodx(uint32_t word) {
    return (word & 0x7C000000U) == 0x14000000U                         /* B, BL */
           || word == 0xD503201FU || (word & 0xFFFFF0FFU) == 0xD50330DFU /* NOP, ISB */
           || (word & 0xFFE0001FU) == 0xD4200000U                      /* BRK */
           || ((word & 0xFFE0001CU) == 0xD4000000U && (word & 3) != 0)  /* SVC, HVC, SMC */
           || (word & 0xFF000010U) == 0x54000000U                      /* B.cond */
           || (word & 0x7E000000U) == 0x34000000U                      /* CBZ, CBNZ */
           || (word & 0x7E000000U) == 0x36000000U;                     /* TBZ, TBNZ */
}

static PyObject *fp_is_cmodx(PyObject *self, PyObject *word) {
    (void)self;
    unsigned long v = PyLong_AsUnsignedLong(word);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(is_cmodx((uint32_t)v));
}

static PyTypeObject *random_type; /* _random.Random: what an mt_object is an instance of */

static int is_random(PyObject *obj) {
    if (random_type != NULL && PyObject_TypeCheck(obj, random_type))
        return 1;
    PyErr_SetString(PyExc_TypeError, "not a random.Random");
    return 0;
}

/* random.Random.random(), peeked at *idx (advanced); -1.0 if the state must be
 * regenerated first */
static inline double peek_random(const mt_object *r, int *idx) {
    if (*idx < 0 || *idx + 2 > MT_N)
        return -1.0;
    uint32_t a = temper(r->state[*idx]) >> 5, b = temper(r->state[*idx + 1]) >> 6;
    *idx += 2;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

/* rng_peek(rng, n) -> the next n random() values, not consumed (None past the state's
 * end): fastpath.walker compares them with what the Random then returns. */
static PyObject *fp_rng_peek(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "rng_peek(rng, n)");
        return NULL;
    }
    if (!is_random(args[0]))
        return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    if (n < 0)
        return PyErr_Occurred() ? NULL : PyList_New(0);
    const mt_object *r = (const mt_object *)args[0];
    int idx = r->index;
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        double x = peek_random(r, &idx);
        PyObject *v = x < 0 ? Py_NewRef(Py_None) : PyFloat_FromDouble(x);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, v);
    }
    return out;
}

static PyObject *S_stopped, *S_gic, *S_pending, *S_runnable, *S_exc, *S_pc, *S_step_no,
    *S_mutations, *S_spun, *S_reason, *S_state, *S_parked, *S_cut, *S_hook_error,
    *S_hook_exception, *S_uc, *S_pure_loads, *S_fetch_points, *S_cmodx_oracle,
    *S_text_stores, *S_last_cse, *S_model, *S_scopes, *S_budget, *S_log, *S_counting,
    *S_arm_key, *S_arm_saved, *S_m_parked, *S_unpark, *S_states_changed, *S_walked,
    *S_kind_at, *S_queues, *S_irq_masked, *S_cpus, *S_invalid,
    *S_pending_words, *S_touched, *S_pou_shared, *S_pou, *S_dside, *S_icache, *S_iview,
    *S_live, *S_view_live, *S_config, *S_dline, *S_complete_choices, *S_has_wfi, *S_isb,
    *S_changed, *S_gen, *S_initial, *S_core_held, *S_core_key_pending, *one;

/* The Arm model's and its threads' attributes the Arm key reads (fp_arm_key) */
enum { N_THREADS, N_MSGS, N_BY_LOC, N_WVIEWS, N_HISTORY, N_COH, N_VRP, /* and 8 more views */
       N_FWD = N_VRP + 9, N_EXBANK, N_REGS, N_TS, N_VIEW, N_EX, N_ARM };
static const char *const arm_spelled[N_ARM] = {
    "threads", "msgs", "by_loc", "wviews", "history", "coh", "vrp", "vwp", "vrm", "vwm",
    "vcap", "vrel", "spill", "signal", "vctrl", "fwd", "exbank", "regs", "ts", "view", "ex"};
static PyObject *arm_names[N_ARM];

static int intern_names(void) {
    struct {
        PyObject **slot;
        const char *name;
    } names[] = {
        {&S_stopped, "stopped"}, {&S_gic, "gic"}, {&S_pending, "pending"},
        {&S_runnable, "_runnable"}, {&S_exc, "exc"}, {&S_pc, "pc"},
        {&S_step_no, "step_no"}, {&S_mutations, "mutations"}, {&S_spun, "spun"},
        {&S_reason, "reason"}, {&S_state, "state"}, {&S_parked, "parked"}, {&S_cut, "cut"},
        {&S_hook_error, "hook_error"}, {&S_hook_exception, "_hook_exception"},
        {&S_uc, "uc"}, {&S_pure_loads, "pure_loads"}, {&S_fetch_points, "fetch_points"},
        {&S_cmodx_oracle, "cmodx_oracle"}, {&S_text_stores, "text_stores"},
        {&S_last_cse, "last_cse"}, {&S_model, "model"}, {&S_scopes, "scopes"},
        {&S_budget, "budget"}, {&S_log, "log"}, {&S_counting, "counting"},
        {&S_arm_key, "arm_key"}, {&S_arm_saved, "arm_saved"}, {&S_m_parked, "_parked"},
        {&S_unpark, "_unpark"}, {&S_states_changed, "states_changed"},
        {&S_walked, "_walked"},
        {&S_kind_at, "kind_at"}, {&S_queues, "queues"}, {&S_irq_masked, "irq_masked"},
        {&S_cpus, "cpus"}, {&S_invalid, "invalid"}, {&S_pending_words, "pending"},
        {&S_touched, "touched"}, {&S_pou_shared, "pou_shared"}, {&S_pou, "pou"},
        {&S_dside, "dside"}, {&S_icache, "icache"}, {&S_iview, "iview"}, {&S_live, "live"},
        {&S_view_live, "view_live"}, {&S_config, "config"}, {&S_dline, "dline"},
        {&S_complete_choices, "complete_choices"}, {&S_has_wfi, "has_wfi"}, {&S_isb, "ISB"},
        {&S_changed, "changed"}, {&S_gen, "gen"}, {&S_initial, "initial"},
        {&S_core_held, "core_held"}, {&S_core_key_pending, "core_key_pending"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].name);
        if (*names[i].slot == NULL)
            return -1;
    }
    for (int i = 0; i < N_ARM; i++)
        if ((arm_names[i] = PyUnicode_InternFromString(arm_spelled[i])) == NULL)
            return -1;
    one = PyLong_FromLong(1);
    return one == NULL ? -1 : 0;
}

/* obj.name as a C long long (-1 with an error set on failure) */
static long long attr_ll(PyObject *obj, PyObject *name) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return x;
}

/* the truth of obj.name: 0, 1, or -1 with an error set */
static int attr_true(PyObject *obj, PyObject *name) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

/* whether obj.name is ``what`` (0, 1, or -1 with an error set) */
static int attr_is(PyObject *obj, PyObject *name, PyObject *what) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    int is = v == what;
    Py_DECREF(v);
    return is;
}

/* Cpu's slots, read and written in place (a slot is a pointer at a fixed offset in the
 * object: PyObject_GetAttr on it costs a type lookup and a descriptor call per access,
 * a few dozen per decision).  The offsets come from the type's member descriptors,
 * checked once per type (cpu_layout). */
enum { CS_EXC, CS_STATE, CS_PARKED, CS_PC, CS_SPUN, CS_KIND_AT, CS_COUNTING, CS_REASON,
       CS_UC, CS_LOG, CS_CUT, CS_LAST_CSE, CS_IRQ_MASKED, CS_HOOK_ERROR, NCS };
static PyObject **const cs_names[NCS] = {&S_exc, &S_state, &S_parked, &S_pc, &S_spun,
                                         &S_kind_at, &S_counting, &S_reason, &S_uc, &S_log,
                                         &S_cut, &S_last_cse, &S_irq_masked, &S_hook_error};
static PyTypeObject *cpu_type; /* the type cpu_off describes (kept for the process) */
static Py_ssize_t cpu_off[NCS];

static int cpu_layout(PyObject *c) {
    if (Py_TYPE(c) == cpu_type)
        return 0;
    Py_ssize_t off[NCS];
    for (int i = 0; i < NCS; i++) {
        PyObject *d = PyObject_GetAttr((PyObject *)Py_TYPE(c), *cs_names[i]);
        if (d == NULL && !PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        int ok = d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type);
        if (ok) {
            PyMemberDef *md = ((PyMemberDescrObject *)d)->d_member;
            ok = md->type == T_OBJECT_EX && !(md->flags & READONLY);
            off[i] = md->offset;
        }
        Py_XDECREF(d);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%s.%U is not a slot", Py_TYPE(c)->tp_name,
                         *cs_names[i]);
            return -1;
        }
    }
    memcpy(cpu_off, off, sizeof off);
    Py_INCREF(Py_TYPE(c));
    Py_XDECREF(cpu_type);
    cpu_type = Py_TYPE(c);
    return 0;
}

/* c.<slot i>, borrowed; NULL with AttributeError if unset */
static inline PyObject *cget(PyObject *c, int i) {
    PyObject *v = *(PyObject **)((char *)c + cpu_off[i]);
    if (v == NULL)
        PyErr_Format(PyExc_AttributeError, "Cpu.%U is not set", *cs_names[i]);
    return v;
}

/* c.<slot i> = v (a new reference is taken) */
static inline void cset(PyObject *c, int i, PyObject *v) {
    PyObject **p = (PyObject **)((char *)c + cpu_off[i]);
    PyObject *old = *p;
    Py_INCREF(v);
    *p = v;
    Py_XDECREF(old);
}

static int cset_ll(PyObject *c, int i, long long x) {
    PyObject *v = PyLong_FromLongLong(x);
    if (v == NULL)
        return -1;
    cset(c, i, v);
    Py_DECREF(v);
    return 0;
}

/* the truth of c.<slot i>: 0, 1, or -1 with an error set */
static inline int ctrue(PyObject *c, int i) {
    PyObject *v = cget(c, i);
    return v == NULL ? -1 : v == Py_True ? 1 : v == Py_False ? 0 : PyObject_IsTrue(v);
}

/* c.<slot i> is what: 0, 1, or -1 with an error set */
static inline int cis(PyObject *c, int i, PyObject *what) {
    PyObject *v = cget(c, i);
    return v == NULL ? -1 : v == what;
}

/* The Machine's attributes the walker reads and writes at each decision, in its instance
 * dict (a dict lookup, not a full attribute lookup): checked per type that the type
 * sets attributes the generic way and has no descriptor of those names. */
static PyObject **const ms_names[] = {&S_stopped, &S_runnable, &S_step_no, &S_mutations,
                                      &S_arm_key, &S_arm_saved, &S_m_parked, &S_gic,
                                      &S_budget, &S_pure_loads, &S_fetch_points, &S_has_wfi,
                                      &S_core_held, &S_core_key_pending};
static PyTypeObject *machine_type; /* the type checked (kept for the process) */

static int machine_layout(PyObject *m) {
    if (Py_TYPE(m) == machine_type)
        return 0;
    if (Py_TYPE(m)->tp_setattro != PyObject_GenericSetAttr ||
        Py_TYPE(m)->tp_getattro != PyObject_GenericGetAttr) {
        PyErr_Format(PyExc_TypeError, "%s sets or gets attributes its own way",
                     Py_TYPE(m)->tp_name);
        return -1;
    }
    for (size_t i = 0; i < sizeof(ms_names) / sizeof(ms_names[0]); i++) {
        PyObject *d = PyObject_GetAttr((PyObject *)Py_TYPE(m), *ms_names[i]);
        if (d == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return -1;
            PyErr_Clear();
            continue;
        }
        int descriptor = Py_TYPE(d)->tp_descr_get != NULL || Py_TYPE(d)->tp_descr_set != NULL;
        Py_DECREF(d);
        if (descriptor) {
            PyErr_Format(PyExc_TypeError, "%s.%U is a descriptor", Py_TYPE(m)->tp_name,
                         *ms_names[i]);
            return -1;
        }
    }
    Py_INCREF(Py_TYPE(m));
    Py_XDECREF(machine_type);
    machine_type = Py_TYPE(m);
    return 0;
}

/* m.name through its dict ``md`` (a new reference; NULL with an error set) */
static PyObject *mget(PyObject *md, PyObject *m, PyObject *name) {
    PyObject *v = PyDict_GetItemWithError(md, name);
    if (v != NULL)
        return Py_NewRef(v);
    return PyErr_Occurred() ? NULL : PyObject_GetAttr(m, name); /* (a class default) */
}

static long long mget_ll(PyObject *md, PyObject *m, PyObject *name) {
    PyObject *v = mget(md, m, name);
    if (v == NULL)
        return -1;
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return x;
}

static int mtrue(PyObject *md, PyObject *m, PyObject *name) {
    PyObject *v = mget(md, m, name);
    if (v == NULL)
        return -1;
    int t = v == Py_True ? 1 : v == Py_False ? 0 : PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

static int mset_ll(PyObject *md, PyObject *name, long long x) {
    PyObject *v = PyLong_FromLongLong(x);
    if (v == NULL)
        return -1;
    int rc = PyDict_SetItem(md, name, v);
    Py_DECREF(v);
    return rc;
}

/* What a walk reads once: the machine's dict, and what does not change in a run */
typedef struct {
    PyObject *md, *gic, *loads, *points;
    long long budget;
} walk_state;

enum { K_MEMORY = 1, K_DAIF = 3, K_FETCH = 4, K_BARRIER = 5, K_ISB = 6, K_DC = 7, K_IC = 8,
       K_YIELD = 9, K_WFE = 10, K_SEV = 12 };

/* the kinds execute._fold may perform (execute.FOLDABLE) */
static inline int foldable(int kind) {
    return kind == K_BARRIER || kind == K_SEV || kind == K_YIELD || kind == K_WFE;
}

/* Whether CPU ``ci``'s catch-up now would do nothing (FetchModel.catch_up: no invalid
 * I-cache word, no pending I-view word): 1, 0, or -1 with an error set. */
static int catch_up_is_noop(PyObject *m, long ci) {
    PyObject *model = PyObject_GetAttr(m, S_model);
    PyObject *cpus = model ? PyObject_GetAttr(model, S_cpus) : NULL;
    Py_XDECREF(model);
    if (cpus == NULL)
        return -1;
    if (!PyList_Check(cpus) || ci >= PyList_GET_SIZE(cpus)) {
        Py_DECREF(cpus);
        PyErr_SetString(PyExc_TypeError, "FetchModel.cpus is not a list of every CPU");
        return -1;
    }
    PyObject *mc = PyList_GET_ITEM(cpus, ci);
    int invalid = attr_true(mc, S_invalid);
    int pending = invalid == 0 ? attr_true(mc, S_pending_words) : invalid;
    Py_DECREF(cpus);
    if (pending < 0)
        return -1;
    return !invalid && !pending;
}

/* Whether the fetch at text offset ``w`` by CPU ``ci`` could be a CMODX violation or
 * leave its fetch scope (execute.step's checks): 1 if Python must decide it, 0 if
 * neither can be, -1 with an error set. */
static int fetch_needs_python(PyObject *m, PyObject *c, long ci, long long w) {
    int cmodx = attr_true(m, S_cmodx_oracle);
    if (cmodx < 0)
        return -1;
    if (cmodx) {
        PyObject *stores = PyObject_GetAttr(m, S_text_stores);
        if (stores == NULL)
            return -1;
        long long cse = attr_ll(c, S_last_cse);
        if (cse == -1 && PyErr_Occurred()) {
            Py_DECREF(stores);
            return -1;
        }
        int found = 0;
        if (!PyList_Check(stores)) {
            found = 1;
        } else {
            /* textside.cmodx_violation's scan: a store by another CPU to this word since
             * this CPU's last context synchronization event, not from one CMODX-safe
             * instruction to another */
            for (Py_ssize_t i = PyList_GET_SIZE(stores) - 1; i >= 0 && !found; i--) {
                PyObject *t = PyList_GET_ITEM(stores, i);
                if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 5) {
                    found = 1;
                    break;
                }
                long long st = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 0));
                if (st <= cse)
                    break;
                long long cpu = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 1));
                long long word = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 2));
                if (word != w || cpu == ci)
                    continue;
                unsigned long old = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(t, 3));
                unsigned long new = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(t, 4));
                if (!is_cmodx((uint32_t)old) || !is_cmodx((uint32_t)new))
                    found = 1;
            }
        }
        Py_DECREF(stores);
        if (PyErr_Occurred())
            return -1;
        if (found)
            return 1;
    }
    PyObject *model = PyObject_GetAttr(m, S_model);
    if (model == NULL)
        return -1;
    PyObject *scopes = PyObject_GetAttr(model, S_scopes);
    Py_DECREF(model);
    if (scopes == NULL)
        return -1;
    int declared = 1;
    if (PyList_Check(scopes) && ci < PyList_GET_SIZE(scopes))
        declared = PyList_GET_ITEM(scopes, ci) != Py_None;
    Py_DECREF(scopes);
    return declared;
}

typedef struct {
    PyObject *m, *c;
    fast_cpu *fc;
    PyObject *none_reason, *visible;
    uint64_t until, no_count;
    long long step_no, budget;
    long ci;
} walk_ctx;

/* One iteration of execute._run's loop up to its fold check: set the run up, run
 * from ``pc``, and say how it ended: 0 stopped before a visible operation as the common
 * case does (no error, no hook exception, its log cut in C); 1 otherwise (``*status``:
 * Unicorn's; Python must finish); -1 with a Python error set. */
static int walk_run(walk_ctx *w, long long pc, int *status) {
    PyObject *c = w->c;
    PyObject *pcobj = PyLong_FromLongLong(pc);
    if (pcobj == NULL)
        return -1;
    PyObject *kind_at = cget(c, CS_KIND_AT);
    int hooked = kind_at ? PySequence_Contains(kind_at, pcobj) : -1;
    Py_DECREF(pcobj);
    if (hooked < 0)
        return -1;
    /* c.skip = pc if pc in c.kind_at else -1; c.left = m.budget: only start() reads
     * them, and every caller of start() sets them first, so they stay in C here */
    long long skip = hooked ? pc : -1;
    int counting = ctrue(c, CS_COUNTING);
    if (counting < 0)
        return -1;
    cset(c, CS_REASON, w->none_reason);
    PyObject *u = cget(c, CS_UC);
    PyObject *log = u ? cget(c, CS_LOG) : NULL;
    if (log == NULL)
        return -1;
    if (!PyList_Check(log)) {
        PyErr_SetString(PyExc_TypeError, "Cpu.log is not a list");
        return -1;
    }
    Py_INCREF(u);
    Py_INCREF(log); /* (a hook may replace either while the CPU runs) */
    if (PyObject_SetAttr(u, S_hook_exception, Py_None) < 0) {
        Py_DECREF(log);
        Py_DECREF(u);
        return -1;
    }
    int stopped;
    int rc = run_cpu(w->fc, (uint64_t)pc, w->until, counting ? w->no_count : 0, skip,
                     w->budget, w->step_no, log, status, &stopped);
    Py_DECREF(log);
    if (rc < 0) {
        Py_DECREF(u);
        return -1;
    }
    if (stopped) { /* the fast path's start(): where the code hook stopped it */
        if (cset_ll(c, CS_PC, w->fc->pc) < 0) {
            Py_DECREF(u);
            return -1;
        }
        cset(c, CS_REASON, w->visible);
        cset(c, CS_CUT, stopped == 2 ? Py_True : Py_False);
    }
    if (*status != 0 || stopped != 1) {
        Py_DECREF(u);
        return 1;
    }
    int t = attr_is(u, S_hook_exception, Py_None);
    Py_DECREF(u);
    int t2 = t <= 0 ? t : cis(c, CS_HOOK_ERROR, Py_None);
    if (t2 < 0)
        return -1;
    return t && t2 ? 0 : 1;
}

static inline int kind_of(const fast_cpu *fc, long long addr) {
    uint64_t wd = ((uint64_t)addr - fc->text_base) >> 2;
    return (uint64_t)addr >= fc->text_base && wd < fc->nwords ? fc->kinds[wd] : 0;
}

/* execute._fold for a CPU stopped at c.pc (= fc->pc) under sc: barriers with no
 * maintenance outstanding and SEVs are performed (logged) and passed.  Returns 0 with
 * *pc the address to run on from; 2 if the CPU stays stopped where it is (an operation
 * not foldable now: the step ends); 1 if Python must fold (a YIELD or WFE: its mark);
 * -1 with a Python error set. */
static int walk_fold(walk_ctx *w, long long *pc) {
    fast_cpu *fc = w->fc;
    long long at = fc->pc;
    for (;;) {
        int kind = kind_of(fc, at);
        if (kind == K_YIELD || kind == K_WFE)
            return 1;
        if (kind == K_BARRIER) { /* foldable with nothing outstanding (model.queues) */
            PyObject *model = PyObject_GetAttr(w->m, S_model);
            PyObject *queues = model ? PyObject_GetAttr(model, S_queues) : NULL;
            Py_XDECREF(model);
            if (queues == NULL)
                return -1;
            PyObject *q = PyList_Check(queues) && w->ci < PyList_GET_SIZE(queues)
                              ? PyList_GET_ITEM(queues, w->ci) : NULL;
            int outstanding = q == NULL ? -1 : PyObject_IsTrue(q);
            Py_DECREF(queues);
            if (outstanding < 0) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_TypeError, "FetchModel.queues is not a list");
                return -1;
            }
            if (outstanding)
                return 2;
        } else if (kind != K_SEV) {
            return 2;
        }
        PyObject *log = cget(w->c, CS_LOG); /* c.log.append((step, pc, pc + 4)) */
        PyObject *entry = log ? Py_BuildValue("(LLL)", w->step_no, at, at + 4) : NULL;
        int rc = entry ? PyList_Append(log, entry) : -1;
        Py_XDECREF(entry);
        if (rc < 0)
            return -1;
        at += 4;
        if (kind_of(fc, at) == 0) { /* kind_at.get(pc) is None or INVISIBLE */
            *pc = at;
            return 0;
        }
        fc->pc = at;
        if (cset_ll(w->c, CS_PC, at) < 0)
            return -1;
    }
}

/* walk(machine, cpus, handles, rng, threshold, steps, consts, decisions, max) -> walked
 *
 * ``cpus``, ``handles``: the machine's Cpu objects and their fast_cpu capsules;
 * ``threshold``: 1.0 - p_model; ``steps``: schedule._STEPS; ``consts``:
 * (CpuState.RUNNABLE, Stop.VISIBLE, Stop.NONE, UNTIL, NO_COUNT, UC_ARM64_REG_PSTATE,
 * PSTATE_I, textside.cache_op, textside.catch_up, execute.resume): the three functions
 * perform a DC or IC, an ISB's catch-up that changes something, and the resume after
 * either when the catch-up made what follows foldable.  Appends the decisions
 * taken to ``decisions`` (scheduler.run's list) while it holds fewer than ``max``;
 * returns how many it took. */
static PyObject *walk_body(PyObject *const *args, Py_ssize_t nargs, walk_state *ws) {
    if (nargs != 9 || !PyTuple_Check(args[1]) || !PyTuple_Check(args[2]) ||
        !PyTuple_Check(args[5]) || !PyTuple_Check(args[6]) || PyTuple_GET_SIZE(args[6]) != 10 ||
        !PyList_Check(args[7]) || PyTuple_GET_SIZE(args[1]) != PyTuple_GET_SIZE(args[2])) {
        PyErr_SetString(PyExc_TypeError, "walk(machine, cpus, handles, rng, threshold, steps, "
                                         "consts, decisions: list, max)");
        return NULL;
    }
    if (!is_random(args[3]))
        return NULL;
    PyObject *m = args[0], *cpus = args[1], *handles = args[2], *steps = args[5];
    mt_object *rng = (mt_object *)args[3];
    double threshold = PyFloat_AsDouble(args[4]);
    PyObject *runnable_state = PyTuple_GET_ITEM(args[6], 0);
    PyObject *visible = PyTuple_GET_ITEM(args[6], 1), *none_reason = PyTuple_GET_ITEM(args[6], 2);
    uint64_t until = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(args[6], 3));
    uint64_t no_count = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(args[6], 4));
    int pstate_id = (int)PyLong_AsLong(PyTuple_GET_ITEM(args[6], 5));
    uint64_t pstate_i = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(args[6], 6));
    PyObject *cache_op = PyTuple_GET_ITEM(args[6], 7), *catch_up = PyTuple_GET_ITEM(args[6], 8);
    PyObject *resume = PyTuple_GET_ITEM(args[6], 9);
    PyObject *decisions = args[7];
    Py_ssize_t max = PyLong_AsSsize_t(args[8]);
    if (PyErr_Occurred())
        return NULL;
    Py_ssize_t ncpus = PyTuple_GET_SIZE(cpus);
    for (Py_ssize_t i = 0; i < ncpus; i++)
        if (cpu_layout(PyTuple_GET_ITEM(cpus, i)) < 0)
            return NULL;
    long walked = 0;
    for (;;) {
        if (PyList_GET_SIZE(decisions) >= max)
            break;
        int t = mtrue(ws->md, m, S_stopped);
        if (t == 0) /* a catch-up made a WFI visible: steppable() is no longer _runnable */
            t = mtrue(ws->md, m, S_has_wfi);
        if (t != 0)
            goto done_or_error;
        /* RandomWalk.choose: r = random(); an IRQ pending anywhere, or r drawing a model
         * choice: Python */
        PyObject *pending = PyObject_GetAttr(ws->gic, S_pending);
        if (pending == NULL)
            return NULL;
        int any = !PyList_Check(pending);
        for (Py_ssize_t i = 0; !any && i < PyList_GET_SIZE(pending); i++) {
            int x = PyObject_IsTrue(PyList_GET_ITEM(pending, i));
            if (x != 0)
                any = 1; /* (or an error, reported below) */
        }
        Py_DECREF(pending);
        if (PyErr_Occurred())
            return NULL;
        if (any)
            break;
        int idx = rng->index;
        double r = peek_random(rng, &idx);
        if (r < 0.0 || r >= threshold)
            break;
        PyObject *ready = mget(ws->md, m, S_runnable); /* machine.steppable(), no WFI */
        if (ready == NULL)
            return NULL;
        Py_ssize_t n = PyList_Check(ready) ? PyList_GET_SIZE(ready) : 0;
        Py_ssize_t pick = 0;
        if (n > 1) { /* rng.randrange(n): getrandbits(n.bit_length()) until below n */
            int k = 0;
            for (Py_ssize_t v = n; v; v >>= 1)
                k++;
            uint32_t bits = 0;
            do {
                if (idx >= MT_N) {
                    n = 0;
                    break;
                }
                bits = temper(rng->state[idx++]) >> (32 - k);
            } while (bits >= (uint32_t)n);
            pick = (Py_ssize_t)bits;
        }
        long ci = n ? PyLong_AsLong(PyList_GET_ITEM(ready, pick)) : -1;
        Py_DECREF(ready);
        if (ci == -1 && PyErr_Occurred())
            return NULL;
        if (ci < 0 || ci >= ncpus || ci >= PyTuple_GET_SIZE(steps))
            break;
        PyObject *c = PyTuple_GET_ITEM(cpus, ci);
        fast_cpu *fc = get(PyTuple_GET_ITEM(handles, ci));
        if (fc == NULL)
            return NULL;
        /* execute.step: no exception entry pending; a memory access, or a fetch of a
         * word stores touched that can be neither a CMODX violation nor out of scope */
        t = cis(c, CS_EXC, Py_None);
        if (t > 0) /* (Machine.apply's own check of a step) */
            t = cis(c, CS_STATE, runnable_state);
        if (t > 0) {
            t = ctrue(c, CS_PARKED);
            t = t < 0 ? -1 : !t;
        }
        if (t <= 0)
            goto done_or_error;
        PyObject *pcobj = cget(c, CS_PC);
        if (pcobj == NULL)
            return NULL;
        Py_INCREF(pcobj);
        long long pc = PyLong_AsLongLong(pcobj);
        if (pc == -1 && PyErr_Occurred()) {
            Py_DECREF(pcobj);
            return NULL;
        }
        uint64_t word = ((uint64_t)pc - fc->text_base) >> 2;
        int kind = kind_of(fc, pc);
        int mutate = 1; /* Machine._step_folded: all but a pure load count a mutation */
        int noop = 0; /* an ISB whose catch-up changes nothing */
        int special = kind == K_ISB || kind == K_DC || kind == K_IC; /* performed, not run */
        if (kind == K_MEMORY) {
            int pure = PySequence_Contains(ws->loads, pcobj);
            int point = pure >= 0 ? PySequence_Contains(ws->points, pcobj) : -1;
            if (point < 0) {
                Py_DECREF(pcobj);
                return NULL;
            }
            mutate = !pure || point;
        } else if (kind == K_FETCH) {
            int py = fetch_needs_python(m, c, ci, (long long)(word << 2)); /* (a byte offset) */
            if (py != 0) {
                Py_DECREF(pcobj);
                if (py < 0)
                    return NULL;
                break;
            }
        } else if (kind == K_ISB || kind == K_DC || kind == K_IC) {
            /* execute.step of an ISB, DC or IC, when what follows it is not foldable
             * (resume would fold it: Python's); an ISB whose catch-up changes nothing
             * is done here, the rest in Python (textside) */
            if (foldable(kind_of(fc, pc + 4))) {
                Py_DECREF(pcobj);
                break;
            }
            noop = kind == K_ISB ? catch_up_is_noop(m, ci) : 0;
            if (noop < 0) {
                Py_DECREF(pcobj);
                return NULL;
            }
        } else if (kind != K_DAIF) {
            Py_DECREF(pcobj);
            break;
        }
        /* Taken: the draws are consumed, the decision recorded (Machine.apply) */
        rng->index = idx;
        if (PyList_Append(decisions, PyTuple_GET_ITEM(steps, ci)) < 0) {
            Py_DECREF(pcobj);
            return NULL;
        }
        walked++;
        long long step_no = mget_ll(ws->md, m, S_step_no);
        long long before = step_no == -1 && PyErr_Occurred() ? -1
                                                             : mget_ll(ws->md, m, S_mutations);
        long long budget = ws->budget;
        if (PyErr_Occurred() || mset_ll(ws->md, S_step_no, ++step_no) < 0 ||
            PyDict_SetItem(ws->md, S_arm_key, Py_None) < 0 ||
            PyDict_SetItem(ws->md, S_arm_saved, Py_None) < 0 ||
            PyDict_SetItem(ws->md, S_core_held, Py_None) < 0 ||
            PyDict_SetItem(ws->md, S_core_key_pending, Py_None) < 0 ||
            (mutate && mset_ll(ws->md, S_mutations, before + 1) < 0)) {
            Py_DECREF(pcobj);
            return NULL;
        }
        Py_DECREF(pcobj);
        cset(c, CS_SPUN, Py_False);
        walk_ctx wc = {m, c, fc, none_reason, visible, until, no_count, step_no, budget, ci};
        int resumed = 0;
        if (special) { /* logged and performed; the run goes on after it (execute.step,
                        * textside.catch_up or cache_op, resume) */
            PyObject *log = cget(c, CS_LOG);
            PyObject *entry = log ? Py_BuildValue("(LLL)", step_no, pc, pc + 4) : NULL;
            int rc = entry ? PyList_Append(log, entry) : -1;
            Py_XDECREF(entry);
            if (rc < 0)
                return NULL;
            if (noop) { /* a context synchronization event with nothing to catch up */
                if (cset_ll(c, CS_LAST_CSE, step_no) < 0)
                    return NULL;
            } else {
                PyObject *at = PyLong_FromLongLong(pc);
                PyObject *res = at == NULL ? NULL : kind == K_ISB
                    ? PyObject_CallFunctionObjArgs(catch_up, m, c, S_isb, NULL)
                    : PyObject_CallFunctionObjArgs(cache_op, m, c, at, NULL);
                Py_XDECREF(at);
                if (res == NULL)
                    return NULL;
                Py_DECREF(res);
            }
            pc += 4;
            if (!noop && foldable(kind_of(fc, pc))) { /* the catch-up made it so */
                PyObject *at = PyLong_FromLongLong(pc);
                PyObject *res = at ? PyObject_CallFunctionObjArgs(resume, m, c, at, NULL) : NULL;
                Py_XDECREF(at);
                if (res == NULL)
                    return NULL;
                Py_DECREF(res);
                resumed = 1;
            }
        }
        if (resumed) {
            /* execute.resume ran it */
        } else if (special && kind_of(fc, pc) != 0) { /* resume: stopped before it */
            fc->pc = pc;
            if (cset_ll(c, CS_PC, pc) < 0)
                return NULL;
        } else {
        /* execute._run: run, then fold what can be folded and run on */
        long long folds = 0;
        int status = 0, done = 0;
        int rc = walk_run(&wc, pc, &status);
        while (rc == 0) { /* stopped before a visible operation (no error) */
            if (folds >= budget) { /* the next fold may be a liveness finding: Python's */
                rc = 1;
                break;
            }
            rc = walk_fold(&wc, &pc);
            if (rc == 2) { /* not foldable (now): the step ends here */
                done = 1;
                break;
            }
            if (rc != 0)
                break;
            folds++;
            rc = walk_run(&wc, pc, &status);
        }
        if (rc < 0)
            return NULL;
        if (!done) { /* Python finishes the run (Machine._walked) */
            PyObject *a1 = PyLong_FromLong(ci), *a2 = PyLong_FromLong(status);
            PyObject *a3 = PyLong_FromLongLong(before), *a4 = PyLong_FromLongLong(folds);
            PyObject *res = a1 && a2 && a3 && a4 ? PyObject_CallMethodObjArgs(
                m, S_walked, a1, a2, a3, a4, kind == K_DAIF ? Py_True : Py_False, NULL) : NULL;
            Py_XDECREF(a1);
            Py_XDECREF(a2);
            Py_XDECREF(a3);
            Py_XDECREF(a4);
            if (res == NULL)
                return NULL;
            Py_DECREF(res);
            break;
        }
        }
        if (kind == K_DAIF) { /* execute.step: whether IRQs are masked now */
            t = cis(c, CS_STATE, runnable_state);
            if (t < 0)
                return NULL;
            if (t) {
                uint64_t pstate = 0;
                int err = fc->reg_read(fc->uc, pstate_id, &pstate);
                if (err != 0)
                    return uc_error(err);
                cset(c, CS_IRQ_MASKED, pstate & pstate_i ? Py_True : Py_False);
            }
        }
        /* Machine._step_folded's end, then Machine.apply's */
        long long now = mget_ll(ws->md, m, S_mutations);
        if (now == -1 && PyErr_Occurred())
            return NULL;
        PyObject *call = NULL;
        if (now != before) {
            t = mtrue(ws->md, m, S_m_parked);
            call = t > 0 ? S_unpark : NULL;
        } else {
            t = ctrue(c, CS_PARKED);
            call = t > 0 ? S_states_changed : NULL;
        }
        if (t < 0)
            return NULL;
        if (call != NULL) {
            PyObject *res = PyObject_CallMethodNoArgs(m, call);
            if (res == NULL)
                return NULL;
            Py_DECREF(res);
        }
        t = cis(c, CS_STATE, runnable_state);
        if (t < 0)
            return NULL;
        if (!t) {
            PyObject *res = PyObject_CallMethodNoArgs(m, S_states_changed);
            if (res == NULL)
                return NULL;
            Py_DECREF(res);
        }
    }
    return PyLong_FromLong(walked);
done_or_error:
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(walked);
}

/* -- the fetch model's choices (FetchModel.choices) ------------------------------------ */

/* A buffer attribute's bytes (bytearray, memoryview...), held until buf_release. */
typedef struct {
    Py_buffer v;
    int held;
} buf_t;

/* obj.name's buffer with ``flags`` (PyBUF_SIMPLE, or PyBUF_WRITABLE to write it) */
static int buf_flags(PyObject *obj, PyObject *name, buf_t *b, int flags) {
    PyObject *o = PyObject_GetAttr(obj, name);
    int r = o ? PyObject_GetBuffer(o, &b->v, flags) : -1;
    Py_XDECREF(o);
    b->held = r == 0;
    return r;
}

static int buf_get(PyObject *obj, PyObject *name, buf_t *b) {
    return buf_flags(obj, name, b, PyBUF_SIMPLE);
}

static int buf_writable(PyObject *obj, PyObject *name, buf_t *b) {
    return buf_flags(obj, name, b, PyBUF_WRITABLE);
}

static void buf_release(buf_t *b) {
    if (b->held)
        PyBuffer_Release(&b->v);
    b->held = 0;
}

/* the word at byte offset w of b (the caller checked w + 4 <= its length) */
static inline const char *at(const buf_t *b, long long w) {
    return (const char *)b->v.buf + w;
}

static inline int fits(const buf_t *b, long long w, long long n) {
    return w >= 0 && w + n <= (long long)b->v.len;
}

/* whether ``key`` is in ``words`` (a set of words, or None: every word): 1, 0, -1 */
static inline int within(PyObject *words, PyObject *key) {
    return words == Py_None ? 1 : PySequence_Contains(words, key);
}

/* out.append((code, cpu, where)): 0, or -1 with an error set */
static int add_choice(PyObject *out, long code, long cpu, long long where) {
    PyObject *t = Py_BuildValue("(llL)", code, cpu, where);
    if (t == NULL)
        return -1;
    int r = PyList_Append(out, t);
    Py_DECREF(t);
    return r;
}

/* What the fetch model's passes over its touched words read: the PoU's and the D-side's
 * bytes, the touched words in order, and the per-CPU lists (cpus, scopes, live,
 * view_live), checked to be lists of one item per CPU. */
typedef struct {
    buf_t pou, dside;
    PyObject *touched, *words, *mcpus, *scopes, *lives, *vlives;
    Py_ssize_t ncpus;
} mview_t;

static void mview_release(mview_t *v) {
    Py_XDECREF(v->vlives);
    Py_XDECREF(v->lives);
    Py_XDECREF(v->scopes);
    Py_XDECREF(v->mcpus);
    Py_XDECREF(v->words);
    Py_XDECREF(v->touched);
    buf_release(&v->dside);
    buf_release(&v->pou);
}

/* Fill ``v`` (zeroed by the caller, released by it whatever this returns): 0, or -1
 * with an error set naming ``who``. */
static int mview_get(PyObject *model, mview_t *v, const char *who) {
    if (buf_get(model, S_pou, &v->pou) < 0 || buf_get(model, S_dside, &v->dside) < 0)
        return -1;
    v->touched = PyObject_GetAttr(model, S_touched);
    v->words = v->touched ? PySequence_List(v->touched) : NULL;
    if (v->words == NULL || PyList_Sort(v->words) < 0)
        return -1;
    v->mcpus = PyObject_GetAttr(model, S_cpus);
    v->scopes = v->mcpus ? PyObject_GetAttr(model, S_scopes) : NULL;
    v->lives = v->scopes ? PyObject_GetAttr(model, S_live) : NULL;
    v->vlives = v->lives ? PyObject_GetAttr(model, S_view_live) : NULL;
    if (v->vlives == NULL)
        return -1;
    Py_ssize_t n = PyList_Check(v->mcpus) ? PyList_GET_SIZE(v->mcpus) : -1;
    if (n < 0 || !PyList_Check(v->scopes) || !PyList_Check(v->lives) ||
        !PyList_Check(v->vlives) || PyList_GET_SIZE(v->scopes) != n ||
        PyList_GET_SIZE(v->lives) != n || PyList_GET_SIZE(v->vlives) != n) {
        PyErr_Format(PyExc_TypeError, "%s: the model's per-CPU lists", who);
        return -1;
    }
    v->ncpus = n;
    return 0;
}

/* memory.CHOICE_* (tests/test_fetch_choices.py checks the codes through the lists) */
enum { CH_CATCH_UP, CH_FILL, CH_FILL_DSIDE, CH_EVICT, CH_COMPLETE, CH_WRITE_BACK };

/* The choices of one CPU (FetchModel.choices' loop body): 0, or -1 with an error set. */
static int cpu_choices(PyObject *out, PyObject *model, long i, PyObject *mc, PyObject *scope,
                       PyObject *live, PyObject *view_live, PyObject *queue, PyObject *words,
                       const long long *wv, const buf_t *pou, const buf_t *dside, int shared,
                       int compact) {
    buf_t icache = {0}, iview = {0};
    PyObject *invalid = PyObject_GetAttr(mc, S_invalid);
    PyObject *pending = invalid ? PyObject_GetAttr(mc, S_pending_words) : NULL;
    PyObject *evicts = NULL, *it = NULL, *w = NULL;
    int r = -1;
    if (pending == NULL || buf_get(mc, S_icache, &icache) < 0 || buf_get(mc, S_iview, &iview) < 0)
        goto end;
    Py_ssize_t npending = PyObject_Length(pending);
    if (npending < 0)
        goto end;
    if (npending) { /* catch_up_would_change */
        it = PyObject_GetIter(pending);
        if (it == NULL)
            goto end;
        while ((w = PyIter_Next(it)) != NULL) {
            int in = within(scope, w);
            if (in > 0)
                in = within(view_live, w);
            int gone = in > 0 ? PySequence_Contains(invalid, w) : in;
            long long x = gone >= 0 && in > 0 ? PyLong_AsLongLong(w) : 0;
            Py_CLEAR(w);
            if (in < 0 || gone < 0 || PyErr_Occurred())
                goto end;
            if (!in)
                continue;
            const buf_t *src = gone ? pou : &icache;
            if (!fits(src, x, 4) || !fits(&iview, x, 4)) {
                PyErr_SetString(PyExc_ValueError, "fetch_choices: a pending word is outside the text");
                goto end;
            }
            if (memcmp(at(src, x), at(&iview, x), 4)) {
                if (add_choice(out, CH_CATCH_UP, i, -1) < 0)
                    goto end;
                break;
            }
        }
        if (PyErr_Occurred())
            goto end;
    }
    Py_ssize_t nw = PyList_GET_SIZE(words);
    if (nw) {
        evicts = PyList_New(0);
        if (evicts == NULL)
            goto end;
        for (Py_ssize_t k = 0; k < nw; k++) {
            PyObject *wo = PyList_GET_ITEM(words, k);
            long long x = wv[k];
            int in = within(scope, wo);
            if (in > 0)
                in = within(live, wo);
            if (in < 0)
                goto end;
            if (!in)
                continue;
            int gone = PySequence_Contains(invalid, wo);
            if (gone < 0)
                goto end;
            if (!fits(&icache, x, 4)) {
                PyErr_SetString(PyExc_ValueError, "fetch_choices: a touched word is outside the I-cache");
                goto end;
            }
            const char *p = at(pou, x), *d = at(dside, x), *cached = at(&icache, x);
            if (compact) { /* refill_choices */
                if ((gone || memcmp(cached, p, 4)) && add_choice(out, CH_FILL, i, x) < 0)
                    goto end;
                if (!shared && memcmp(d, p, 4) && (gone || memcmp(cached, d, 4)) &&
                    add_choice(out, CH_FILL_DSIDE, i, x) < 0)
                    goto end;
            } else if (gone) { /* fill_choices */
                if (add_choice(out, CH_FILL, i, x) < 0)
                    goto end;
                if (!shared && memcmp(d, p, 4) && add_choice(out, CH_FILL_DSIDE, i, x) < 0)
                    goto end;
            } else if ((memcmp(cached, p, 4) || memcmp(cached, d, 4)) && /* evict_choices */
                       add_choice(evicts, CH_EVICT, i, x) < 0) {
                goto end;
            }
        }
        Py_ssize_t n = PyList_GET_SIZE(out);
        if (PyList_SetSlice(out, n, n, evicts) < 0)
            goto end;
    }
    Py_ssize_t nq = PyObject_Length(queue);
    if (nq < 0)
        goto end;
    if (nq) { /* complete_choices, in Python (maintenance is queued only under arm) */
        PyObject *ci = PyLong_FromLong(i);
        PyObject *got = ci ? PyObject_CallMethodOneArg(model, S_complete_choices, ci) : NULL;
        Py_XDECREF(ci);
        if (got == NULL || !PyList_Check(got)) {
            if (got != NULL)
                PyErr_SetString(PyExc_TypeError, "complete_choices() is not a list");
            Py_XDECREF(got);
            goto end;
        }
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(got); k++) {
            long long x = PyLong_AsLongLong(PyList_GET_ITEM(got, k));
            if ((x == -1 && PyErr_Occurred()) || add_choice(out, CH_COMPLETE, i, x) < 0) {
                Py_DECREF(got);
                goto end;
            }
        }
        Py_DECREF(got);
    }
    r = 0;
end:
    Py_XDECREF(w);
    Py_XDECREF(it);
    Py_XDECREF(evicts);
    Py_XDECREF(pending);
    Py_XDECREF(invalid);
    buf_release(&iview);
    buf_release(&icache);
    return r;
}

/* fetch_choices(model, cpus, compact) -> FetchModel.choices(cpus, compact), in C: the
 * same (code, cpu, where) tuples in the same order (tests/test_fetch_choices.py compares
 * them on the states of runs and explorations). */
static PyObject *fp_fetch_choices(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3 || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "fetch_choices(model, cpus: list, compact)");
        return NULL;
    }
    PyObject *model = args[0], *cpus = args[1];
    int compact = PyObject_IsTrue(args[2]);
    if (compact < 0)
        return NULL;
    mview_t v = {0};
    long long *wv = NULL;
    PyObject *out = NULL, *queues = NULL, *config = NULL;
    int shared = attr_true(model, S_pou_shared);
    if (shared < 0 || mview_get(model, &v, "fetch_choices") < 0)
        goto fail;
    queues = PyObject_GetAttr(model, S_queues);
    if (queues == NULL)
        goto fail;
    Py_ssize_t ncpus = v.ncpus;
    if (!PyList_Check(queues) || PyList_GET_SIZE(queues) != ncpus) {
        PyErr_SetString(PyExc_TypeError, "fetch_choices: the model's per-CPU lists");
        goto fail;
    }
    Py_ssize_t nw = PyList_GET_SIZE(v.words);
    if (nw) {
        wv = PyMem_New(long long, nw);
        if (wv == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    for (Py_ssize_t k = 0; k < nw; k++) {
        wv[k] = PyLong_AsLongLong(PyList_GET_ITEM(v.words, k));
        if (wv[k] == -1 && PyErr_Occurred())
            goto fail;
        if (!fits(&v.pou, wv[k], 4) || !fits(&v.dside, wv[k], 4)) {
            PyErr_SetString(PyExc_ValueError, "fetch_choices: a touched word is outside the text");
            goto fail;
        }
    }
    out = PyList_New(0);
    if (out == NULL)
        goto fail;
    Py_ssize_t nrun = PyList_GET_SIZE(cpus);
    for (Py_ssize_t k = 0; k < nrun; k++) {
        long i = PyLong_AsLong(PyList_GET_ITEM(cpus, k));
        if (i == -1 && PyErr_Occurred())
            goto fail;
        if (i < 0 || i >= ncpus) {
            PyErr_Format(PyExc_ValueError, "fetch_choices: no CPU%ld", i);
            goto fail;
        }
        if (cpu_choices(out, model, i, PyList_GET_ITEM(v.mcpus, i),
                        PyList_GET_ITEM(v.scopes, i), PyList_GET_ITEM(v.lives, i),
                        PyList_GET_ITEM(v.vlives, i), PyList_GET_ITEM(queues, i), v.words, wv,
                        &v.pou, &v.dside, shared, compact) < 0)
            goto fail;
    }
    if (nrun && !shared && nw) { /* write_back_choices */
        config = PyObject_GetAttr(model, S_config);
        long long dline = config ? attr_ll(config, S_dline) : -1;
        if (dline <= 0 || (dline & (dline - 1))) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "fetch_choices: the D-cache line size");
            goto fail;
        }
        long long last = -1;
        for (Py_ssize_t k = 0; k < nw; k++) {
            long long ln = wv[k] & ~(dline - 1);
            if (ln == last)
                continue;
            last = ln;
            if (!fits(&v.pou, ln, dline) || !fits(&v.dside, ln, dline)) {
                PyErr_SetString(PyExc_ValueError, "fetch_choices: a line is outside the text");
                goto fail;
            }
            if (memcmp(at(&v.pou, ln), at(&v.dside, ln), (size_t)dline) &&
                add_choice(out, CH_WRITE_BACK, -1, ln) < 0)
                goto fail;
        }
    }
    goto end;
fail:
    Py_CLEAR(out);
end:
    PyMem_Free(wv);
    Py_XDECREF(config);
    Py_XDECREF(queues);
    mview_release(&v);
    return out;
}

/* set_ctl(cpu, uc_ctl, remove_code) -> None: uc_ctl by address and the control word of
 * a translation-cache removal (UC_CTL_IO_WRITE, two arguments, UC_CTL_TB_REMOVE_CACHE),
 * for remove_cache(). */
static PyObject *fp_set_ctl(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "set_ctl(cpu, uc_ctl, remove_code)");
        return NULL;
    }
    fast_cpu *c = get(args[0]);
    if (c == NULL)
        return NULL;
    ctl_fn ctl = (ctl_fn)PyLong_AsVoidPtr(args[1]);
    long code = PyLong_AsLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    c->ctl = ctl;
    c->remove_code = (int)code;
    Py_RETURN_NONE;
}

/* remove_cache(cpu, begin, end) -> None: Unicorn's ctl_remove_cache (its translations of
 * [begin, end) dropped) in one C call; ctypes wrapped both arguments in Python objects
 * at every call (emulator.cache_remover, which this replaces with the compiled path). */
static PyObject *fp_remove_cache(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "remove_cache(cpu, begin, end)");
        return NULL;
    }
    fast_cpu *c = get(args[0]);
    if (c == NULL)
        return NULL;
    if (c->ctl == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_ctl() was not called");
        return NULL;
    }
    uint64_t begin = PyLong_AsUnsignedLongLong(args[1]);
    uint64_t end = PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    int status = c->ctl(c->uc, c->remove_code, begin, end);
    if (status != 0)
        return uc_error(status);
    Py_RETURN_NONE;
}

/* lazy(cpu, uc_hook_add, UC_HOOK_CODE, UC_ARM64_REG_PC) -> None
 *
 * Hook code as it first runs (cpu._block_hook's scheme, in the block hook here): no
 * code hook until hook() or a block that holds words with a kind and no hook.  Unicorn
 * walks the list of every code hook of the instance at each hooked instruction; with
 * one per run of visible words in the kernels' text installed up front (112 in
 * jump_label_nosync) the compiled path was about 13% slower on the engine bench.
 * Needs set_ctl() and state() first. */
static PyObject *fp_lazy(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "lazy(cpu, uc_hook_add, code_type, pc_id)");
        return NULL;
    }
    fast_cpu *c = get(args[0]);
    if (c == NULL)
        return NULL;
    hook_add_fn add = (hook_add_fn)PyLong_AsVoidPtr(args[1]);
    long type = PyLong_AsLong(args[2]);
    long pc_id = PyLong_AsLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    if (c->ctl == NULL || c->reg_read == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lazy() needs set_ctl() and state() first");
        return NULL;
    }
    if (c->hooked == NULL) {
        c->hooked = calloc(c->nwords ? c->nwords : 1, 1);
        if (c->hooked == NULL)
            return PyErr_NoMemory();
    }
    c->hook_add = add;
    c->code_type = (int)type;
    c->pc_id = (int)pc_id;
    Py_RETURN_NONE;
}

/* hook(cpu, lo, hi) -> None: a code hook on [lo, hi] (whole text words, cpu.hook_code's
 * ``code_hook``), its words marked hooked. */
static PyObject *fp_hook(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "hook(cpu, lo, hi)");
        return NULL;
    }
    fast_cpu *c = get(args[0]);
    if (c == NULL)
        return NULL;
    if (c->hooked == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lazy() was not called");
        return NULL;
    }
    uint64_t lo = PyLong_AsUnsignedLongLong(args[1]);
    uint64_t hi = PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    uint64_t w0 = (lo - c->text_base) >> 2, w1 = ((hi - c->text_base) >> 2) + 1;
    if (lo < c->text_base || hi < lo || w1 > c->nwords) {
        PyErr_Format(PyExc_ValueError, "hook(): [%#llx, %#llx] is not inside the text",
                     (unsigned long long)lo, (unsigned long long)hi);
        return NULL;
    }
    int status = add_code_hook(c, w0, w1);
    if (status != 0)
        return uc_error(status);
    Py_RETURN_NONE;
}

/* hooked(cpu) -> the addresses a code hook covers, in order (for tests) */
static PyObject *fp_hooked(PyObject *self, PyObject *capsule) {
    (void)self;
    fast_cpu *c = get(capsule);
    if (c == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    for (uint64_t w = 0; out != NULL && c->hooked != NULL && w < c->nwords; w++) {
        if (!c->hooked[w])
            continue;
        PyObject *a = PyLong_FromUnsignedLongLong(c->text_base + 4 * w);
        if (a == NULL || PyList_Append(out, a) < 0)
            Py_CLEAR(out);
        Py_XDECREF(a);
    }
    return out;
}

/* Each word of the set ``words`` (ints) copied from ``src`` into ``dst`` (writable):
 * 0, or -1 with an error set. */
static int copy_words(PyObject *words, buf_t *dst, const buf_t *src) {
    PyObject *it = PyObject_GetIter(words), *w;
    if (it == NULL)
        return -1;
    while ((w = PyIter_Next(it)) != NULL) {
        long long x = PyLong_AsLongLong(w);
        Py_DECREF(w);
        if (x == -1 && PyErr_Occurred())
            break;
        if (!fits(dst, x, 4) || !fits(src, x, 4)) {
            PyErr_SetString(PyExc_ValueError, "reset: a word is outside the text");
            break;
        }
        memcpy((char *)dst->v.buf + x, at(src, x), 4);
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

/* model_reset(model) -> FetchModel.reset's words, in C: the touched words of the D-side
 * (and the PoU unless shared) back to the initial text, and per CPU its changed I-view
 * words and its touched or invalid I-cache words; ``invalid``, ``pending`` and
 * ``changed`` emptied.  Returns, per CPU, the I-view words changed, sorted; the caller
 * does the rest (tests/test_fetch_choices.py compares it with the Python reset). */
static PyObject *fp_model_reset(PyObject *self, PyObject *model) {
    (void)self;
    buf_t init = {0}, dside = {0}, pou = {0};
    PyObject *out = NULL, *touched = NULL, *mcpus = NULL;
    int shared = attr_true(model, S_pou_shared);
    if (shared < 0 || buf_get(model, S_initial, &init) < 0 ||
        buf_writable(model, S_dside, &dside) < 0 ||
        (!shared && buf_writable(model, S_pou, &pou) < 0))
        goto fail;
    touched = PyObject_GetAttr(model, S_touched);
    mcpus = touched ? PyObject_GetAttr(model, S_cpus) : NULL;
    if (mcpus == NULL)
        goto fail;
    if (!PyList_Check(mcpus)) {
        PyErr_SetString(PyExc_TypeError, "reset: the model's cpus is not a list");
        goto fail;
    }
    if (copy_words(touched, &dside, &init) < 0 || (!shared && copy_words(touched, &pou, &init) < 0))
        goto fail;
    out = PyList_New(0);
    if (out == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(mcpus); i++) {
        PyObject *mc = PyList_GET_ITEM(mcpus, i);
        buf_t icache = {0}, iview = {0};
        PyObject *invalid = PyObject_GetAttr(mc, S_invalid);
        PyObject *pending = invalid ? PyObject_GetAttr(mc, S_pending_words) : NULL;
        PyObject *changed = pending ? PyObject_GetAttr(mc, S_changed) : NULL;
        PyObject *words = changed ? PySequence_List(changed) : NULL;
        int ok = words != NULL && PySet_Check(invalid) && PySet_Check(pending) &&
                 PySet_Check(changed);
        if (words != NULL && !ok)
            PyErr_SetString(PyExc_TypeError, "reset: invalid, pending, changed are sets");
        ok = ok && PyList_Sort(words) == 0 && buf_writable(mc, S_icache, &icache) == 0 &&
             buf_writable(mc, S_iview, &iview) == 0 && copy_words(words, &iview, &init) == 0 &&
             copy_words(touched, &icache, &init) == 0 && copy_words(invalid, &icache, &init) == 0 &&
             PySet_Clear(invalid) == 0 && PySet_Clear(pending) == 0 && PySet_Clear(changed) == 0 &&
             PyList_Append(out, words) == 0;
        buf_release(&iview);
        buf_release(&icache);
        Py_XDECREF(words);
        Py_XDECREF(changed);
        Py_XDECREF(pending);
        Py_XDECREF(invalid);
        if (!ok)
            goto fail;
    }
    goto end;
fail:
    Py_CLEAR(out);
end:
    Py_XDECREF(mcpus);
    Py_XDECREF(touched);
    buf_release(&pou);
    buf_release(&dside);
    buf_release(&init);
    return out;
}

/* key_words(model) -> bytes: the per-word part of FetchModel._digest, in C: for each
 * touched word in order, the word (4 bytes, little-endian), its D-side and PoU bytes,
 * then for each CPU that may still fetch it its I-cache word ("i" if invalid) and its
 * I-view word ("----" if it will not fetch it from there).  tests/test_fetch_choices.py
 * compares it with the Python digest's parts. */
static PyObject *fp_key_words(PyObject *self, PyObject *model) {
    (void)self;
    mview_t v = {0};
    buf_t *icache = NULL, *iview = NULL;
    PyObject **invalid = NULL;
    char *out = NULL;
    PyObject *res = NULL;
    Py_ssize_t ncpus = 0;
    if (mview_get(model, &v, "key_words") < 0)
        goto end;
    ncpus = v.ncpus;
    icache = PyMem_New(buf_t, ncpus ? ncpus : 1);
    iview = PyMem_New(buf_t, ncpus ? ncpus : 1);
    invalid = PyMem_New(PyObject *, ncpus ? ncpus : 1);
    if (icache == NULL || iview == NULL || invalid == NULL) {
        PyErr_NoMemory();
        ncpus = 0;
        goto end;
    }
    for (Py_ssize_t i = 0; i < ncpus; i++) {
        icache[i].held = iview[i].held = 0;
        invalid[i] = NULL;
    }
    for (Py_ssize_t i = 0; i < ncpus; i++) {
        PyObject *mc = PyList_GET_ITEM(v.mcpus, i);
        invalid[i] = PyObject_GetAttr(mc, S_invalid);
        if (invalid[i] == NULL || buf_get(mc, S_icache, &icache[i]) < 0 ||
            buf_get(mc, S_iview, &iview[i]) < 0)
            goto end;
    }
    Py_ssize_t nw = PyList_GET_SIZE(v.words), len = 0;
    out = PyMem_Malloc((size_t)(nw * (12 + 8 * ncpus)) + 1);
    if (out == NULL) {
        PyErr_NoMemory();
        goto end;
    }
    for (Py_ssize_t k = 0; k < nw; k++) {
        PyObject *wo = PyList_GET_ITEM(v.words, k);
        long long w = PyLong_AsLongLong(wo);
        if (w == -1 && PyErr_Occurred())
            goto end;
        if (w < 0 || w > 0xFFFFFFFFLL || !fits(&v.pou, w, 4) || !fits(&v.dside, w, 4)) {
            PyErr_SetString(PyExc_ValueError, "key_words: a touched word is outside the text");
            goto end;
        }
        for (int b = 0; b < 4; b++)
            out[len++] = (char)((w >> (8 * b)) & 0xFF);
        memcpy(out + len, at(&v.dside, w), 4);
        memcpy(out + len + 4, at(&v.pou, w), 4);
        len += 8;
        for (Py_ssize_t i = 0; i < ncpus; i++) {
            int in = within(PyList_GET_ITEM(v.scopes, i), wo);
            if (in > 0)
                in = within(PyList_GET_ITEM(v.lives, i), wo);
            if (in < 0)
                goto end;
            if (!in)
                continue;
            int gone = PySequence_Contains(invalid[i], wo);
            int seen = gone >= 0 ? within(PyList_GET_ITEM(v.vlives, i), wo) : 0;
            if (gone < 0 || seen < 0)
                goto end;
            if (!fits(&icache[i], w, 4) || !fits(&iview[i], w, 4)) {
                PyErr_SetString(PyExc_ValueError, "key_words: a word is outside a CPU's view");
                goto end;
            }
            if (gone) {
                out[len++] = 'i';
            } else {
                memcpy(out + len, at(&icache[i], w), 4);
                len += 4;
            }
            memcpy(out + len, seen ? at(&iview[i], w) : "----", 4);
            len += 4;
        }
    }
    res = PyBytes_FromStringAndSize(out, len);
end:
    PyMem_Free(out);
    for (Py_ssize_t i = 0; i < ncpus; i++) {
        Py_XDECREF(invalid[i]);
        buf_release(&iview[i]);
        buf_release(&icache[i]);
    }
    PyMem_Free(invalid);
    PyMem_Free(iview);
    PyMem_Free(icache);
    mview_release(&v);
    return res;
}

/* -- the Arm model's state key (ArmMemory.key) ----------------------------------------- */

/* a growable array of int64 (the key's numbers) */
typedef struct {
    int64_t *v;
    Py_ssize_t n, cap;
} nums_t;

static int push(nums_t *a, int64_t x) {
    if (a->n == a->cap) {
        Py_ssize_t cap = a->cap ? 2 * a->cap : 256;
        int64_t *v = PyMem_Realloc(a->v, (size_t)cap * sizeof(int64_t));
        if (v == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* bisect.bisect_right / bisect_left of x in the sorted a[0..n) */
static Py_ssize_t bisect_r(const int64_t *a, Py_ssize_t n, int64_t x) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (x < a[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static Py_ssize_t bisect_l(const int64_t *a, Py_ssize_t n, int64_t x) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (a[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int64_t attr_i64(PyObject *o, PyObject *name) {
    return (int64_t)attr_ll(o, name);
}

/* a location's messages: its timestamps and the floor the key counts from */
typedef struct {
    int64_t loc;
    int64_t *stamps;
    Py_ssize_t n, low;
} aloc_t;

typedef struct {
    int64_t ts;
    Py_ssize_t j; /* the location's place among the active ones; -1: below its floor */
    Py_ssize_t k; /* its place among the digested ones */
} merged_t;

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_merged(const void *a, const void *b) {
    const merged_t *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->k < y->k ? -1 : x->k > y->k;
}

static int cmp_row4(const void *a, const void *b) {
    const int64_t *x = a, *y = b;
    for (int i = 0; i < 4; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

static int cmp_row3(const void *a, const void *b) {
    const int64_t *x = a, *y = b;
    for (int i = 0; i < 3; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

/* the location's entry in the sorted locs[0..n), or NULL */
static aloc_t *find_loc(aloc_t *locs, Py_ssize_t n, int64_t loc) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (locs[mid].loc < loc)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && locs[lo].loc == loc ? &locs[lo] : NULL;
}

/* the rank of view v among the state's sorted distinct views (it is one of them) */
static int64_t rank_of(const int64_t *views, const int64_t *ranks, Py_ssize_t n, int64_t v) {
    Py_ssize_t i = bisect_l(views, n, v);
    return i < n && views[i] == v ? ranks[i] : 0;
}

/* ArmMemory.key's at(loc, ts): a message's position from its location's floor, -1 if
 * below it, 0 for a location the key leaves out */
static int64_t at_of(aloc_t *locs, Py_ssize_t nlocs, int64_t loc, int64_t ts) {
    aloc_t *a = find_loc(locs, nlocs, loc);
    if (a == NULL)
        return 0;
    Py_ssize_t p = bisect_r(a->stamps, a->n, ts) - a->low;
    return p >= 0 ? p : -1;
}

/* per thread, what the key reads (ArmMemory.key) */
typedef struct {
    PyObject *coh, *fwd, *regs; /* borrowed from the thread (held by it) */
    PyObject *t;                /* the ThreadState (a new reference) */
    int64_t scal[9];            /* vrp, vwp, vrm, vwm, vcap, vrel, spill, signal, vctrl */
    int has_ex;
    int64_t ex[3];              /* exbank: (loc, ts, view) */
} th_t;

/* coh.get(loc) as int64: 1 and *out if present, 0 if absent, -1 on error */
static int coh_get(PyObject *coh, PyObject *loc, int64_t *out) {
    PyObject *v = PyDict_GetItemWithError(coh, loc);
    if (v == NULL)
        return PyErr_Occurred() ? -1 : 0;
    *out = PyLong_AsLongLong(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 1;
}

/* arm_key(arm) -> bytes: what ArmMemory.key digests without promises (the values, then
 * the numbers as native int64), in C; tests/test_armmem.py compares it with Python. */
static PyObject *fp_arm_key(PyObject *self, PyObject *arm) {
    (void)self;
    PyObject *threads = NULL, *msgs = NULL, *by_loc = NULL, *wviews = NULL, *hist = NULL,
             *initial = NULL, *keys = NULL, *res = NULL, *values = NULL;
    th_t *th = NULL;
    aloc_t *locs = NULL;
    PyObject **locobj = NULL;
    int64_t *views = NULL, *ranks = NULL, *counts = NULL, *rows = NULL;
    merged_t *merged = NULL;
    nums_t nums = {NULL, 0, 0};
    Py_ssize_t nth = 0, nlocs = 0, nviews = 0, nactive = 0;

    threads = PyObject_GetAttr(arm, arm_names[N_THREADS]);
    msgs = threads ? PyObject_GetAttr(arm, arm_names[N_MSGS]) : NULL;
    by_loc = msgs ? PyObject_GetAttr(arm, arm_names[N_BY_LOC]) : NULL;
    wviews = by_loc ? PyObject_GetAttr(arm, arm_names[N_WVIEWS]) : NULL;
    hist = wviews ? PyObject_GetAttr(arm, arm_names[N_HISTORY]) : NULL;
    initial = hist ? PyObject_GetAttr(arm, S_initial) : NULL;
    if (initial == NULL)
        goto end;
    if (!PyList_Check(threads) || !PyList_Check(msgs) || !PyDict_Check(by_loc) ||
        !PyDict_Check(wviews) || !PyDict_Check(initial)) {
        PyErr_SetString(PyExc_TypeError, "arm_key: the model's parts");
        goto end;
    }
    values = PyList_New(0);
    if (values == NULL)
        goto end;
    nth = PyList_GET_SIZE(threads);
    th = PyMem_New(th_t, nth ? nth : 1);
    if (th == NULL) {
        PyErr_NoMemory();
        nth = 0;
        goto end;
    }
    for (Py_ssize_t i = 0; i < nth; i++)
        th[i].t = NULL;
    for (Py_ssize_t i = 0; i < nth; i++) {
        PyObject *t = PyList_GET_ITEM(threads, i);
        Py_INCREF(t);
        th[i].t = t;
        PyObject *coh = PyObject_GetAttr(t, arm_names[N_COH]);
        PyObject *fwd = coh ? PyObject_GetAttr(t, arm_names[N_FWD]) : NULL;
        PyObject *regs = fwd ? PyObject_GetAttr(t, arm_names[N_REGS]) : NULL;
        PyObject *ex = regs ? PyObject_GetAttr(t, arm_names[N_EXBANK]) : NULL;
        /* (the thread holds them: borrowed from here on) */
        Py_XDECREF(coh);
        Py_XDECREF(fwd);
        Py_XDECREF(regs);
        if (ex == NULL)
            goto end;
        th[i].coh = coh;
        th[i].fwd = fwd;
        th[i].regs = regs;
        th[i].has_ex = ex != Py_None;
        if (th[i].has_ex) {
            if (!PyTuple_Check(ex) || PyTuple_GET_SIZE(ex) != 3) {
                Py_DECREF(ex);
                PyErr_SetString(PyExc_TypeError, "arm_key: an exclusive bank");
                goto end;
            }
            for (int k = 0; k < 3; k++)
                th[i].ex[k] = PyLong_AsLongLong(PyTuple_GET_ITEM(ex, k));
        }
        Py_DECREF(ex);
        for (int k = 0; k < 9; k++)
            th[i].scal[k] = attr_i64(t, arm_names[N_VRP + k]);
        if (PyErr_Occurred())
            goto end;
        if (!PyDict_Check(coh) || !PyDict_Check(fwd) || !PyList_Check(regs)) {
            PyErr_SetString(PyExc_TypeError, "arm_key: a thread's parts");
            goto end;
        }
    }
    /* the locations in order, but the history */
    keys = PyDict_Keys(by_loc);
    if (keys == NULL || PyList_Sort(keys) < 0)
        goto end;
    Py_ssize_t nkeys = PyList_GET_SIZE(keys);
    locs = PyMem_New(aloc_t, nkeys ? nkeys : 1);
    locobj = PyMem_New(PyObject *, nkeys ? nkeys : 1);
    if (locs == NULL || locobj == NULL) {
        PyErr_NoMemory();
        goto end;
    }
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *lo = PyList_GET_ITEM(keys, k);
        int in = PySequence_Contains(hist, lo);
        if (in < 0)
            goto end;
        if (in)
            continue;
        PyObject *st = PyDict_GetItemWithError(by_loc, lo);
        if (st == NULL || !(PyList_Check(st) || PyTuple_Check(st)) ||
            PySequence_Fast_GET_SIZE(st) == 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "arm_key: a location's timestamps");
            goto end;
        }
        aloc_t *a = &locs[nlocs];
        a->loc = PyLong_AsLongLong(lo);
        a->n = PySequence_Fast_GET_SIZE(st);
        a->stamps = PyMem_New(int64_t, a->n);
        if (a->stamps == NULL) {
            PyErr_NoMemory();
            goto end;
        }
        locobj[nlocs] = lo;
        nlocs++;
        for (Py_ssize_t i = 0; i < a->n; i++)
            a->stamps[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(st, i));
        if (PyErr_Occurred())
            goto end;
        int64_t latest = a->stamps[a->n - 1];
        Py_ssize_t low = a->n;
        for (Py_ssize_t i = 0; i < nth; i++) {
            int64_t bound = 0, got;
            int r = coh_get(th[i].coh, lo, &got);
            if (r < 0)
                goto end;
            if (r)
                bound = got;
            int64_t vrp = th[i].scal[0];
            if (bound != latest && vrp > bound) { /* R2 */
                Py_ssize_t j = bisect_r(a->stamps, a->n, vrp);
                if (j && a->stamps[j - 1] > bound)
                    bound = a->stamps[j - 1];
            }
            if (th[i].has_ex && th[i].ex[0] == a->loc && th[i].ex[1] < bound)
                bound = th[i].ex[1];
            if (bound != latest) {
                Py_ssize_t j = bisect_r(a->stamps, a->n, bound);
                if (j < low)
                    low = j;
            }
        }
        a->low = low;
        Py_ssize_t first = low ? low - 1 : 0;
        if (push(&nums, a->loc) < 0 || push(&nums, low) < 0 || push(&nums, a->n - first) < 0)
            goto end;
        if (low == 0) {
            PyObject *init = PyDict_GetItemWithError(initial, lo);
            if (init == NULL || !PyBytes_Check(init)) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_TypeError, "arm_key: a location's initial value");
                goto end;
            }
            if (PyList_Append(values, init) < 0 || push(&nums, PyBytes_GET_SIZE(init)) < 0)
                goto end;
        }
        for (Py_ssize_t i = first; i < a->n; i++) {
            int64_t ts = a->stamps[i];
            if (ts < 1 || ts > PyList_GET_SIZE(msgs)) {
                PyErr_SetString(PyExc_ValueError, "arm_key: a timestamp without a message");
                goto end;
            }
            PyObject *m = PyList_GET_ITEM(msgs, ts - 1);
            if (!PyTuple_Check(m) || PyTuple_GET_SIZE(m) != 3 ||
                !PyBytes_Check(PyTuple_GET_ITEM(m, 1))) {
                PyErr_SetString(PyExc_TypeError, "arm_key: a message");
                goto end;
            }
            PyObject *value = PyTuple_GET_ITEM(m, 1);
            int64_t tid = PyLong_AsLongLong(PyTuple_GET_ITEM(m, 2));
            if ((tid == -1 && PyErr_Occurred()) || PyList_Append(values, value) < 0 ||
                push(&nums, tid) < 0 || push(&nums, PyBytes_GET_SIZE(value)) < 0)
                goto end;
        }
        if (low < a->n)
            nactive++;
    }
    /* the distinct views of the state, in order */
    {
        nums_t vs = {NULL, 0, 0};
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        int bad = 0;
        while (!bad && PyDict_Next(wviews, &pos, &k, &v)) {
            int64_t x = PyLong_AsLongLong(v);
            bad = (x == -1 && PyErr_Occurred()) || push(&vs, x) < 0;
        }
        for (Py_ssize_t i = 0; !bad && i < nth; i++) {
            for (int s = 0; !bad && s < 9; s++)
                bad = push(&vs, th[i].scal[s]) < 0;
            for (Py_ssize_t r = 0; !bad && r < PyList_GET_SIZE(th[i].regs); r++) {
                int64_t x = PyLong_AsLongLong(PyList_GET_ITEM(th[i].regs, r));
                bad = (x == -1 && PyErr_Occurred()) || push(&vs, x) < 0;
            }
            pos = 0;
            while (!bad && PyDict_Next(th[i].fwd, &pos, &k, &v)) {
                int64_t x = attr_i64(v, arm_names[N_VIEW]);
                bad = (x == -1 && PyErr_Occurred()) || push(&vs, x) < 0;
            }
            if (!bad && th[i].has_ex)
                bad = push(&vs, th[i].ex[2]) < 0;
        }
        if (bad) {
            PyMem_Free(vs.v);
            goto end;
        }
        if (vs.n)
            qsort(vs.v, (size_t)vs.n, sizeof(int64_t), cmp_i64);
        for (Py_ssize_t i = 0; i < vs.n; i++)
            if (nviews == 0 || vs.v[i] != vs.v[nviews - 1])
                vs.v[nviews++] = vs.v[i];
        views = vs.v;
    }
    /* every digested message in timestamp order, once (ArmMemory.key's ``order``) */
    Py_ssize_t nmerged = 0;
    for (Py_ssize_t i = 0; i < nlocs; i++)
        nmerged += locs[i].n - (locs[i].low ? locs[i].low - 1 : 0);
    merged = PyMem_New(merged_t, nmerged ? nmerged : 1);
    if (merged == NULL) {
        PyErr_NoMemory();
        goto end;
    }
    {
        Py_ssize_t m = 0, j = 0;
        for (Py_ssize_t i = 0; i < nlocs; i++) {
            int active = locs[i].low < locs[i].n;
            for (Py_ssize_t s = locs[i].low ? locs[i].low - 1 : 0; s < locs[i].n; s++) {
                Py_ssize_t place = active && s >= locs[i].low ? j : -1;
                merged[m++] = (merged_t){locs[i].stamps[s], place, i};
            }
            j += active;
        }
        if (m)
            qsort(merged, (size_t)m, sizeof(merged_t), cmp_merged);
    }
    ranks = PyMem_New(int64_t, nviews ? nviews : 1);
    if (ranks == NULL || push(&nums, nactive) < 0) {
        if (ranks == NULL)
            PyErr_NoMemory();
        goto end;
    }
    if (nactive) {
        counts = PyMem_New(int64_t, nactive);
        if (counts == NULL) {
            PyErr_NoMemory();
            goto end;
        }
        memset(counts, 0, (size_t)nactive * sizeof(int64_t));
        Py_ssize_t i = 0;
        int64_t distinct = -1;
        for (Py_ssize_t k = 0; k < nviews; k++) {
            int moved = distinct < 0;
            while (i < nmerged && merged[i].ts <= views[k]) {
                if (merged[i].j >= 0) { /* (below a floor: no view's position) */
                    counts[merged[i].j]++;
                    moved = 1;
                }
                i++;
            }
            if (moved) {
                distinct++;
                for (Py_ssize_t c = 0; c < nactive; c++)
                    if (push(&nums, counts[c]) < 0)
                        goto end;
            }
            ranks[k] = distinct;
        }
        if (push(&nums, distinct + 1) < 0)
            goto end;
    } else {
        for (Py_ssize_t k = 0; k < nviews; k++)
            ranks[k] = 0;
    }
    /* per thread: coherence at the active locations, the views' ranks, forwarding, the
     * exclusive bank */
    for (Py_ssize_t i = 0; i < nth; i++) {
        for (Py_ssize_t l = 0; l < nlocs; l++) {
            aloc_t *a = &locs[l];
            if (a->low >= a->n)
                continue;
            int64_t seen = 0; /* (no entry: nothing read, as 0: R1, P3) */
            if (coh_get(th[i].coh, locobj[l], &seen) < 0)
                goto end;
            Py_ssize_t p = bisect_r(a->stamps, a->n, seen) - a->low;
            if (push(&nums, p >= 0 ? p : -1) < 0)
                goto end;
        }
        for (int s = 0; s < 9; s++)
            if (push(&nums, rank_of(views, ranks, nviews, th[i].scal[s])) < 0)
                goto end;
        Py_ssize_t nregs = PyList_GET_SIZE(th[i].regs);
        if (push(&nums, nregs) < 0)
            goto end;
        for (Py_ssize_t r = 0; r < nregs; r++) {
            int64_t x = PyLong_AsLongLong(PyList_GET_ITEM(th[i].regs, r));
            if ((x == -1 && PyErr_Occurred()) || push(&nums, rank_of(views, ranks, nviews, x)) < 0)
                goto end;
        }
        Py_ssize_t nf = PyDict_GET_SIZE(th[i].fwd), kept = 0;
        PyMem_Free(rows);
        rows = PyMem_New(int64_t, 4 * (nf ? nf : 1));
        if (rows == NULL) {
            PyErr_NoMemory();
            goto end;
        }
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(th[i].fwd, &pos, &k, &v)) {
            int in = PySequence_Contains(hist, k);
            if (in < 0)
                goto end;
            if (in)
                continue;
            int64_t loc = PyLong_AsLongLong(k);
            int64_t ts = attr_i64(v, arm_names[N_TS]);
            int64_t view = attr_i64(v, arm_names[N_VIEW]);
            int exclusive = attr_true(v, arm_names[N_EX]);
            if (PyErr_Occurred() || exclusive < 0)
                goto end;
            int64_t a = at_of(locs, nlocs, loc, ts);
            if (a < 0)
                continue;
            int64_t *row = &rows[4 * kept++];
            row[0] = loc;
            row[1] = a;
            row[2] = rank_of(views, ranks, nviews, view);
            row[3] = exclusive;
        }
        if (kept)
            qsort(rows, (size_t)kept, 4 * sizeof(int64_t), cmp_row4);
        if (push(&nums, kept) < 0)
            goto end;
        for (Py_ssize_t r = 0; r < 4 * kept; r++)
            if (push(&nums, rows[r]) < 0)
                goto end;
        if (!th[i].has_ex) {
            if (push(&nums, -1) < 0)
                goto end;
        } else if (push(&nums, 1) < 0 || push(&nums, th[i].ex[0]) < 0 ||
                   push(&nums, at_of(locs, nlocs, th[i].ex[0], th[i].ex[1])) < 0 ||
                   push(&nums, rank_of(views, ranks, nviews, th[i].ex[2])) < 0) {
            goto end;
        }
    }
    /* F1: every text store's W2 view, by its place among its location's messages */
    {
        Py_ssize_t nt = PyDict_GET_SIZE(wviews), kept = 0;
        PyMem_Free(rows);
        rows = PyMem_New(int64_t, 3 * (nt ? nt : 1));
        if (rows == NULL) {
            PyErr_NoMemory();
            goto end;
        }
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(wviews, &pos, &k, &v)) {
            int64_t ts = PyLong_AsLongLong(k), view = PyLong_AsLongLong(v);
            if (PyErr_Occurred())
                goto end;
            if (ts < 1 || ts > PyList_GET_SIZE(msgs)) {
                PyErr_SetString(PyExc_ValueError, "arm_key: a text store without a message");
                goto end;
            }
            PyObject *m = PyList_GET_ITEM(msgs, ts - 1);
            PyObject *lo = PyTuple_Check(m) ? PyTuple_GET_ITEM(m, 0) : NULL;
            PyObject *st = lo ? PyDict_GetItemWithError(by_loc, lo) : NULL;
            if (st == NULL || !(PyList_Check(st) || PyTuple_Check(st))) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_TypeError, "arm_key: a text store's location");
                goto end;
            }
            Py_ssize_t lo_i = 0, hi = PySequence_Fast_GET_SIZE(st); /* bisect_left */
            while (lo_i < hi) {
                Py_ssize_t mid = (lo_i + hi) / 2;
                int64_t x = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(st, mid));
                if (x < ts)
                    lo_i = mid + 1;
                else
                    hi = mid;
            }
            int64_t *row = &rows[3 * kept++];
            row[0] = PyLong_AsLongLong(lo);
            row[1] = lo_i;
            row[2] = rank_of(views, ranks, nviews, view);
            if (PyErr_Occurred())
                goto end;
        }
        if (kept)
            qsort(rows, (size_t)kept, 3 * sizeof(int64_t), cmp_row3);
        if (push(&nums, kept) < 0)
            goto end;
        for (Py_ssize_t r = 0; r < 3 * kept; r++)
            if (push(&nums, rows[r]) < 0)
                goto end;
    }
    /* the order of the digested messages across locations, each by its location's
     * place among the digested ones (ArmMemory.key says why) */
    if (push(&nums, nmerged) < 0)
        goto end;
    for (Py_ssize_t i = 0; i < nmerged; i++)
        if (push(&nums, merged[i].k) < 0)
            goto end;
    {
        PyObject *tail = PyBytes_FromStringAndSize((const char *)nums.v,
                                                   (Py_ssize_t)(nums.n * sizeof(int64_t)));
        if (tail == NULL || PyList_Append(values, tail) < 0) {
            Py_XDECREF(tail);
            goto end;
        }
        Py_DECREF(tail);
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        if (empty != NULL) {
            res = PyObject_CallMethod(empty, "join", "O", values);
            Py_DECREF(empty);
        }
    }
end:
    PyMem_Free(nums.v);
    PyMem_Free(rows);
    PyMem_Free(counts);
    PyMem_Free(merged);
    PyMem_Free(ranks);
    PyMem_Free(views);
    for (Py_ssize_t l = 0; l < nlocs; l++)
        PyMem_Free(locs[l].stamps);
    PyMem_Free(locs);
    PyMem_Free(locobj);
    for (Py_ssize_t i = 0; i < nth; i++)
        Py_XDECREF(th[i].t);
    PyMem_Free(th);
    Py_XDECREF(keys);
    Py_XDECREF(values);
    Py_XDECREF(initial);
    Py_XDECREF(hist);
    Py_XDECREF(wviews);
    Py_XDECREF(by_loc);
    Py_XDECREF(msgs);
    Py_XDECREF(threads);
    return res;
}

/* restore_cpus(model, cpus) -> FetchModel.restore's per-CPU part, in C: each CPU of the
 * model takes its (icache, invalid, pending, iview, changed) of the snapshot's ``cpus``,
 * copying or rebuilding only what differs; returns, per CPU, the I-view words whose
 * bytes changed, sorted (tests/test_fetch_choices.py compares it with Python). */
static PyObject *fp_restore_cpus(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "restore_cpus(model, cpus: tuple)");
        return NULL;
    }
    PyObject *model = args[0], *snaps = args[1];
    PyObject *mcpus = PyObject_GetAttr(model, S_cpus), *out = NULL;
    if (mcpus == NULL)
        return NULL;
    if (!PyList_Check(mcpus) || PyList_GET_SIZE(mcpus) != PyTuple_GET_SIZE(snaps)) {
        PyErr_SetString(PyExc_ValueError, "restore_cpus: one state per CPU");
        goto fail;
    }
    out = PyList_New(0);
    if (out == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(mcpus); i++) {
        PyObject *mc = PyList_GET_ITEM(mcpus, i), *st = PyTuple_GET_ITEM(snaps, i);
        if (!PyTuple_Check(st) || PyTuple_GET_SIZE(st) != 5) {
            PyErr_SetString(PyExc_TypeError, "restore_cpus: a CPU's state is a 5-tuple");
            goto fail;
        }
        PyObject *icache_s = PyTuple_GET_ITEM(st, 0), *iview_s = PyTuple_GET_ITEM(st, 3);
        PyObject *names3[3] = {S_invalid, S_pending_words, S_changed};
        PyObject *sets_s[3] = {PyTuple_GET_ITEM(st, 1), PyTuple_GET_ITEM(st, 2),
                               PyTuple_GET_ITEM(st, 4)};
        if (!PyBytes_Check(icache_s) || !PyBytes_Check(iview_s)) {
            PyErr_SetString(PyExc_TypeError, "restore_cpus: I-cache and I-view are bytes");
            goto fail;
        }
        buf_t icache = {0}, iview = {0};
        if (buf_writable(mc, S_icache, &icache) < 0)
            goto fail;
        if (icache.v.len != PyBytes_GET_SIZE(icache_s)) {
            buf_release(&icache);
            PyErr_SetString(PyExc_ValueError, "restore_cpus: an I-cache of another size");
            goto fail;
        }
        if (memcmp(icache.v.buf, PyBytes_AS_STRING(icache_s), (size_t)icache.v.len))
            memcpy(icache.v.buf, PyBytes_AS_STRING(icache_s), (size_t)icache.v.len);
        buf_release(&icache);
        /* invalid, pending: a new set where they differ; changed: after the diff */
        PyObject *now_changed = PyObject_GetAttr(mc, S_changed);
        if (now_changed == NULL)
            goto fail;
        for (int k = 0; k < 2; k++) {
            PyObject *now = PyObject_GetAttr(mc, names3[k]);
            int same = now ? PyObject_RichCompareBool(now, sets_s[k], Py_EQ) : -1;
            Py_XDECREF(now);
            PyObject *fresh = same == 0 ? PySet_New(sets_s[k]) : NULL;
            if (same < 0 || (same == 0 && (fresh == NULL ||
                                           PyObject_SetAttr(mc, names3[k], fresh) < 0))) {
                Py_XDECREF(fresh);
                Py_DECREF(now_changed);
                goto fail;
            }
            Py_XDECREF(fresh);
        }
        Py_ssize_t n_now = PyObject_Length(now_changed), n_snap = PyObject_Length(sets_s[2]);
        if (n_now < 0 || n_snap < 0) {
            Py_DECREF(now_changed);
            goto fail;
        }
        PyObject *diff = PyList_New(0);
        if (diff == NULL || PyList_Append(out, diff) < 0) {
            Py_XDECREF(diff);
            Py_DECREF(now_changed);
            goto fail;
        }
        Py_DECREF(diff); /* (held by out) */
        if (n_now == 0 && n_snap == 0) {
            Py_DECREF(now_changed);
            continue;
        }
        if (buf_writable(mc, S_iview, &iview) < 0) {
            Py_DECREF(now_changed);
            goto fail;
        }
        const char *want = PyBytes_AS_STRING(iview_s);
        Py_ssize_t size = PyBytes_GET_SIZE(iview_s);
        int bad = iview.v.len != size;
        PyObject *both = bad ? NULL : PyNumber_Or(now_changed, sets_s[2]);
        PyObject *it = both ? PyObject_GetIter(both) : NULL, *w;
        bad = bad || it == NULL;
        while (!bad && (w = PyIter_Next(it)) != NULL) {
            long long x = PyLong_AsLongLong(w);
            if ((x == -1 && PyErr_Occurred()) || x < 0 || x + 4 > size) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "restore_cpus: a word outside the text");
                bad = 1;
            } else if (memcmp((char *)iview.v.buf + x, want + x, 4)) {
                memcpy((char *)iview.v.buf + x, want + x, 4);
                bad = PyList_Append(diff, w) < 0;
            }
            Py_DECREF(w);
        }
        if (!bad && PyErr_Occurred())
            bad = 1;
        Py_XDECREF(it);
        Py_XDECREF(both);
        buf_release(&iview);
        if (!bad) {
            int same = PyObject_RichCompareBool(now_changed, sets_s[2], Py_EQ);
            PyObject *fresh = same == 0 ? PySet_New(sets_s[2]) : NULL;
            bad = same < 0 || (same == 0 && (fresh == NULL ||
                                             PyObject_SetAttr(mc, S_changed, fresh) < 0));
            Py_XDECREF(fresh);
        }
        Py_DECREF(now_changed);
        if (bad) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "restore_cpus: an I-view of another size");
            goto fail;
        }
        if (PyList_Sort(diff) < 0)
            goto fail;
    }
    Py_DECREF(mcpus);
    return out;
fail:
    Py_XDECREF(out);
    Py_DECREF(mcpus);
    return NULL;
}

/* catch_up(model, cpu) -> FetchModel.catch_up(cpu), in C (rule 7): every invalid word
 * of the CPU's I-cache filled from the PoU, then its pending I-view words copied from
 * the I-cache; the words whose I-view value changed, in address order.  The model's
 * generation counts one, its ``changed`` set follows, ``invalid`` and ``pending`` are
 * emptied (tests/test_fetch_choices.py compares it with the Python rule). */
static PyObject *fp_catch_up(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "catch_up(model, cpu)");
        return NULL;
    }
    PyObject *model = args[0];
    Py_ssize_t cpu = PyLong_AsSsize_t(args[1]);
    if (cpu == -1 && PyErr_Occurred())
        return NULL;
    buf_t pou = {0}, icache = {0}, iview = {0}, init = {0};
    PyObject *out = NULL, *mcpus = NULL, *invalid = NULL, *pending = NULL, *changed = NULL,
             *it = NULL, *w = NULL, *gen = NULL, *next = NULL;
    mcpus = PyObject_GetAttr(model, S_cpus);
    if (mcpus == NULL)
        goto end;
    if (!PyList_Check(mcpus) || cpu < 0 || cpu >= PyList_GET_SIZE(mcpus)) {
        PyErr_Format(PyExc_ValueError, "catch_up: no CPU%zd", cpu);
        goto end;
    }
    PyObject *mc = PyList_GET_ITEM(mcpus, cpu);
    invalid = PyObject_GetAttr(mc, S_invalid);
    pending = invalid ? PyObject_GetAttr(mc, S_pending_words) : NULL;
    changed = pending ? PyObject_GetAttr(mc, S_changed) : NULL;
    if (changed == NULL)
        goto end;
    if (!PySet_Check(invalid) || !PySet_Check(pending) || !PySet_Check(changed)) {
        PyErr_SetString(PyExc_TypeError, "catch_up: invalid, pending, changed are sets");
        goto end;
    }
    out = PyList_New(0);
    if (out == NULL || (PySet_GET_SIZE(invalid) == 0 && PySet_GET_SIZE(pending) == 0))
        goto end;
    gen = PyObject_GetAttr(model, S_gen);
    next = gen ? PyNumber_Add(gen, one) : NULL;
    if (next == NULL || PyObject_SetAttr(model, S_gen, next) < 0)
        goto fail;
    if (buf_get(model, S_pou, &pou) < 0 || buf_get(model, S_initial, &init) < 0)
        goto fail;
    if (buf_writable(mc, S_icache, &icache) < 0 || buf_writable(mc, S_iview, &iview) < 0)
        goto fail;
    it = PyObject_GetIter(invalid);
    if (it == NULL)
        goto fail;
    while ((w = PyIter_Next(it)) != NULL) {
        long long x = PyLong_AsLongLong(w);
        Py_CLEAR(w);
        if (x == -1 && PyErr_Occurred())
            goto fail;
        if (!fits(&pou, x, 4) || !fits(&icache, x, 4)) {
            PyErr_SetString(PyExc_ValueError, "catch_up: an invalid word is outside the text");
            goto fail;
        }
        memcpy((char *)icache.v.buf + x, at(&pou, x), 4);
    }
    Py_CLEAR(it);
    if (PyErr_Occurred() || PySet_Clear(invalid) < 0)
        goto fail;
    it = PyObject_GetIter(pending);
    if (it == NULL)
        goto fail;
    while ((w = PyIter_Next(it)) != NULL) {
        long long x = PyLong_AsLongLong(w);
        if (x == -1 && PyErr_Occurred())
            goto fail;
        if (!fits(&icache, x, 4) || !fits(&iview, x, 4) || !fits(&init, x, 4)) {
            PyErr_SetString(PyExc_ValueError, "catch_up: a pending word is outside the text");
            goto fail;
        }
        const char *now = at(&icache, x);
        if (memcmp(at(&iview, x), now, 4)) {
            memcpy((char *)iview.v.buf + x, now, 4);
            if (PyList_Append(out, w) < 0)
                goto fail;
            if ((memcmp(now, at(&init, x), 4) ? PySet_Add(changed, w)
                                              : PySet_Discard(changed, w)) < 0)
                goto fail;
        }
        Py_CLEAR(w);
    }
    Py_CLEAR(it);
    if (PyErr_Occurred() || PySet_Clear(pending) < 0 || PyList_Sort(out) < 0)
        goto fail;
    goto end;
fail:
    Py_CLEAR(out);
end:
    Py_XDECREF(w);
    Py_XDECREF(it);
    Py_XDECREF(next);
    Py_XDECREF(gen);
    Py_XDECREF(changed);
    Py_XDECREF(pending);
    Py_XDECREF(invalid);
    Py_XDECREF(mcpus);
    buf_release(&init);
    buf_release(&iview);
    buf_release(&icache);
    buf_release(&pou);
    return out;
}

/* instructions(logs) -> trace.instructions(logs), in C: the instructions the logged
 * blocks hold, (end - start) / 4 summed over every (step, start, end) with start >= 0
 * (tests/test_walker.py compares them). */
static PyObject *fp_instructions(PyObject *self, PyObject *logs) {
    (void)self;
    if (!PyList_Check(logs)) {
        PyErr_SetString(PyExc_TypeError, "instructions(logs: list of lists of 3-tuples)");
        return NULL;
    }
    long long n = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(logs); i++) {
        PyObject *log = PyList_GET_ITEM(logs, i);
        if (!PyList_Check(log)) {
            PyErr_SetString(PyExc_TypeError, "instructions: a log is not a list");
            return NULL;
        }
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(log); k++) {
            PyObject *e = PyList_GET_ITEM(log, k);
            if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 3) {
                PyErr_SetString(PyExc_TypeError, "instructions: an entry is not a 3-tuple");
                return NULL;
            }
            long long start = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 1));
            long long end = start >= 0 ? PyLong_AsLongLong(PyTuple_GET_ITEM(e, 2)) : 0;
            if (PyErr_Occurred())
                return NULL;
            if (start >= 0)
                n += (end - start) >> 2;
        }
    }
    return PyLong_FromLongLong(n);
}

/* set_private(cpu, iview, ranges, xregs) -> None: the CPU's I-view (a bytearray,
 * kept alive by the machine, which maps it), its private ranges ((lo, hi), ...; at
 * most MAX_PRIVATE: more is an error) and Unicorn's ids of X0..X30.  state() must
 * have been called (the hook reads registers through it). */
static PyObject *fp_set_private(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4 || !PyByteArray_Check(args[1]) || !PyTuple_Check(args[2]) ||
        !PyTuple_Check(args[3]) || PyTuple_GET_SIZE(args[3]) != 31) {
        PyErr_SetString(PyExc_TypeError, "set_private(cpu, iview: bytearray, ranges: tuple, "
                                         "xregs: tuple of 31)");
        return NULL;
    }
    fast_cpu *c = get(args[0]);
    if (c == NULL)
        return NULL;
    if (c->reg_read == NULL || (uint64_t)PyByteArray_GET_SIZE(args[1]) < 4 * c->nwords) {
        PyErr_SetString(PyExc_ValueError, "set_private: no state() yet, or a short I-view");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(args[2]);
    if (n > MAX_PRIVATE) {
        PyErr_Format(PyExc_ValueError, "set_private: at most %d ranges", MAX_PRIVATE);
        return NULL;
    }
    uint64_t lo[MAX_PRIVATE], hi[MAX_PRIVATE];
    int ids[31];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PyTuple_GET_ITEM(args[2], i);
        if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2) {
            PyErr_SetString(PyExc_TypeError, "set_private: a range is (lo, hi)");
            return NULL;
        }
        lo[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(r, 0));
        hi[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(r, 1));
    }
    for (int i = 0; i < 31; i++)
        ids[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(args[3], i));
    if (PyErr_Occurred())
        return NULL;
    c->iview = (const uint8_t *)PyByteArray_AS_STRING(args[1]);
    memcpy(c->priv_lo, lo, sizeof lo);
    memcpy(c->priv_hi, hi, sizeof hi);
    memcpy(c->xreg, ids, sizeof ids);
    c->npriv = (int)n;
    Py_RETURN_NONE;
}

/* plain_ea(word, base, index) -> (address, nbytes) or None: isa.plain_address and
 * isa.plain_ea, in C (tests/test_private.py compares them) */
static PyObject *fp_plain_ea(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "plain_ea(word, base, index)");
        return NULL;
    }
    unsigned long word = PyLong_AsUnsignedLong(args[0]);
    uint64_t base = PyLong_AsUnsignedLongLong(args[1]);
    uint64_t index = PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    plain_plan p;
    if (!plain_address((uint32_t)word, &p))
        Py_RETURN_NONE;
    return Py_BuildValue("(KK)", (unsigned long long)plain_ea(&p, base, p.rm == 31 ? 0 : index),
                         (unsigned long long)p.nbytes);
}

static PyObject *fp_walk(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "walk(machine, cpus, handles, rng, threshold, steps, "
                                         "consts, decisions: list, max)");
        return NULL;
    }
    if (!is_random(args[3])) /* (checked again, with the rest, in walk_body) */
        return NULL;
    PyObject *m = args[0];
    if (machine_layout(m) < 0)
        return NULL;
    walk_state ws = {NULL, NULL, NULL, NULL, 0};
    PyObject *out = NULL;
    ws.md = PyObject_GenericGetDict(m, NULL);
    if (ws.md == NULL || !PyDict_Check(ws.md))
        goto end;
    ws.gic = mget(ws.md, m, S_gic);
    ws.loads = ws.gic ? mget(ws.md, m, S_pure_loads) : NULL;
    ws.points = ws.loads ? mget(ws.md, m, S_fetch_points) : NULL;
    ws.budget = ws.points ? mget_ll(ws.md, m, S_budget) : -1;
    if (!PyErr_Occurred())
        out = walk_body(args, nargs, &ws);
end:
    Py_XDECREF(ws.points);
    Py_XDECREF(ws.loads);
    Py_XDECREF(ws.gic);
    Py_XDECREF(ws.md);
    return out;
}

static PyMethodDef methods[] = {
    {"restore_cpus", (PyCFunction)(void (*)(void))fp_restore_cpus, METH_FASTCALL,
     "restore_cpus(model, cpus) -> FetchModel.restore's per-CPU part, in C"},
    {"arm_key", fp_arm_key, METH_O,
     "arm_key(arm) -> what ArmMemory.key digests without promises, in C"},
    {"key_words", fp_key_words, METH_O,
     "key_words(model) -> the per-word part of FetchModel._digest, in C"},
    {"model_reset", fp_model_reset, METH_O,
     "model_reset(model) -> FetchModel.reset's words, in C"},
    {"set_ctl", (PyCFunction)(void (*)(void))fp_set_ctl, METH_FASTCALL,
     "set_ctl(cpu, uc_ctl, remove_code) -> None"},
    {"remove_cache", (PyCFunction)(void (*)(void))fp_remove_cache, METH_FASTCALL,
     "remove_cache(cpu, begin, end) -> None: ctl_remove_cache in C"},
    {"lazy", (PyCFunction)(void (*)(void))fp_lazy, METH_FASTCALL,
     "lazy(cpu, uc_hook_add, code_type, pc_id) -> None: hook code as it first runs"},
    {"hook", (PyCFunction)(void (*)(void))fp_hook, METH_FASTCALL,
     "hook(cpu, lo, hi) -> None: a code hook on [lo, hi]"},
    {"hooked", fp_hooked, METH_O, "hooked(cpu) -> the addresses a code hook covers"},
    {"catch_up", (PyCFunction)(void (*)(void))fp_catch_up, METH_FASTCALL,
     "catch_up(model, cpu) -> FetchModel.catch_up(cpu), in C"},
    {"instructions", fp_instructions, METH_O,
     "instructions(logs) -> trace.instructions(logs), in C"},
    {"fetch_choices", (PyCFunction)(void (*)(void))fp_fetch_choices, METH_FASTCALL,
     "fetch_choices(model, cpus, compact) -> FetchModel.choices(cpus, compact), in C"},
    {"set_private", (PyCFunction)(void (*)(void))fp_set_private, METH_FASTCALL,
     "set_private(cpu, iview, ranges, xregs) -> None"},
    {"plain_ea", (PyCFunction)(void (*)(void))fp_plain_ea, METH_FASTCALL,
     "plain_ea(word, base, index) -> (address, nbytes) or None"},
    {"walk", (PyCFunction)(void (*)(void))fp_walk, METH_FASTCALL,
     "walk(machine, cpus, handles, rng, threshold, steps, consts, decisions, max) -> walked"},
    {"is_cmodx", fp_is_cmodx, METH_O, "is_cmodx(word) -> isa.is_cmodx(word), in C"},
    {"rng_peek", (PyCFunction)(void (*)(void))fp_rng_peek, METH_FASTCALL,
     "rng_peek(rng, n) -> the next n random() values, not consumed"},
    {"state", (PyCFunction)(void (*)(void))fp_state, METH_FASTCALL,
     "state(cpu, reg_read_batch, reg_read, reg_write, context_alloc, context_save, context_restore, "
     "context_free, context_size, cp_reg_id, key_reg_ids) -> None"},
    {"regs", fp_regs, METH_O, "regs(cpu) -> the key registers, as bytes"},
    {"read", (PyCFunction)(void (*)(void))fp_read, METH_FASTCALL, "read(cpu, reg) -> value"},
    {"write", (PyCFunction)(void (*)(void))fp_write, METH_FASTCALL,
     "write(cpu, reg, value) -> None"},
    {"spsr", fp_spsr, METH_O, "spsr(cpu) -> SPSR_EL1"},
    {"save", fp_save, METH_O, "save(cpu) -> the CPU's context, as bytes"},
    {"restore", (PyCFunction)(void (*)(void))fp_restore, METH_FASTCALL,
     "restore(cpu, context) -> None"},
    {"new", (PyCFunction)(void (*)(void))fp_new, METH_FASTCALL,
     "new(uc, start, stop, text_base, kinds_address, nwords) -> cpu"},
    {"address", fp_address, METH_O, "address(cpu) -> the hooks' user data"},
    {"block_hook", fp_block_hook, METH_NOARGS, "block_hook() -> the block hook's address"},
    {"flush", (PyCFunction)(void (*)(void))fp_flush, METH_FASTCALL,
     "flush(cpu, log): append the blocks logged so far to log"},
    {"start", (PyCFunction)(void (*)(void))fp_start, METH_FASTCALL,
     "start(cpu, begin, until, count, skip, left, step, log) -> (status, stopped, pc)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpath",
    "The engine's compiled hooks and run call (see testbed/fastpath.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (intern_names() < 0)
        return NULL;
    PyObject *mod = PyImport_ImportModule("_random");
    if (mod == NULL)
        return NULL;
    PyObject *type = PyObject_GetAttrString(mod, "Random");
    Py_DECREF(mod);
    if (type == NULL)
        return NULL;
    if (!PyType_Check(type)) {
        Py_DECREF(type);
        PyErr_SetString(PyExc_ImportError, "_random.Random is not a type");
        return NULL;
    }
    random_type = (PyTypeObject *)type; /* (kept for the life of the process) */
    return PyModule_Create(&module);
}
