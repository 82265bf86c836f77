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
 * No Unicorn header or library is linked: the binding's own uc_emu_start and
 * uc_emu_stop are passed in as addresses, so the module builds with any C compiler and
 * only Python's headers.  testbed/cpu.py's pure-Python hooks do exactly the same and
 * are the fallback; tests/test_corpus.py replays the corpus through both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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

/* AArch64's coprocessor register of the binding (uc_arm64_cp_reg) */
typedef struct {
    uint32_t crn, crm, op0, op1, op2;
    uint64_t val;
} cp_reg;

#define MAX_KEY_REGS 64

enum { STOP_NONE = 0, STOP_VISIBLE = 1 };

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
} fast_cpu;

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
        c->pc = (int64_t)addr;
        c->reason = STOP_VISIBLE;
        c->stop(uc);
    }
}

static void block_hook(void *uc, uint64_t addr, uint32_t size, void *user) {
    fast_cpu *c = (fast_cpu *)user;
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

/* hooks() -> (code hook address, block hook address) */
static PyObject *fp_hooks(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return Py_BuildValue("(NN)", PyLong_FromVoidPtr((void *)(uintptr_t)code_hook),
                         PyLong_FromVoidPtr((void *)(uintptr_t)block_hook));
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
    c->skip = PyLong_AsLongLong(args[4]);
    c->left = PyLong_AsLongLong(args[5]);
    c->step = PyLong_AsLongLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    c->reason = STOP_NONE;
    c->overflow = 0;
    int status = c->start(c->uc, begin, until, 0, (size_t)count);
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
    if (flush(c, args[7]) < 0)
        return NULL;
    if (c->overflow)
        return PyErr_NoMemory();
    return Py_BuildValue("(iiL)", status, c->reason, (long long)c->pc);
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

static PyMethodDef methods[] = {
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
    {"hooks", fp_hooks, METH_NOARGS, "hooks() -> (code hook, block hook) addresses"},
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

PyMODINIT_FUNC PyInit__fastpath(void) { return PyModule_Create(&module); }
