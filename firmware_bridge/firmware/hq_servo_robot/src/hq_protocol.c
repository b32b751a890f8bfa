/* hq_protocol: see hq_protocol.h. Portable C99: no allocation, no stdio, any byte order. */
#include "hq_protocol.h"

#include <string.h>

typedef char hq_float_is_32_bits[sizeof(float) == 4 ? 1 : -1];

uint16_t hq_crc16(const uint8_t *data, size_t len) {
    uint16_t crc = 0xFFFF;
    size_t i;
    int bit;
    for (i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned)data[i] << 8); /* unsigned: int may be 16 bits */
        for (bit = 0; bit < 8; bit++) {
            crc = (uint16_t)((crc & 0x8000u) ? ((unsigned)crc << 1) ^ 0x1021u : (unsigned)crc << 1);
        }
    }
    return crc;
}

size_t hq_cobs_encode(const uint8_t *in, size_t len, uint8_t *out) {
    size_t code_at = 0, n = 1, i;
    uint8_t code = 1;
    for (i = 0; i < len; i++) {
        if (in[i] != 0) {
            out[n++] = in[i];
            code++;
        }
        if (in[i] == 0 || code == 0xFF) { /* close the block; open another unless the data ends */
            out[code_at] = code;
            code = 1;
            code_at = n;
            if (in[i] == 0 || i + 1 < len) n++;
        }
    }
    if (code_at < n) out[code_at] = code;
    return n;
}

hq_status hq_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t *out_len) {
    size_t i = 0, n = 0, j;
    while (i < len) {
        uint8_t code = in[i];
        size_t stop = i + code;
        if (code == 0 || stop > len) return HQ_ERR_COBS;
        for (j = i + 1; j < stop; j++) {
            if (in[j] == 0) return HQ_ERR_COBS;
            out[n++] = in[j];
        }
        if (code != 0xFF && stop < len) out[n++] = 0;
        i = stop;
    }
    *out_len = n;
    return HQ_OK;
}

/* --- payload writer and reader ----------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} hq_writer;

static void put_u8(hq_writer *w, uint8_t v) {
    if (w->len < w->cap) w->p[w->len] = v;
    w->len++; /* counts past cap so the caller sees the overflow */
}
static void put_u16(hq_writer *w, uint16_t v) {
    put_u8(w, (uint8_t)(v & 0xFF));
    put_u8(w, (uint8_t)(v >> 8));
}
static void put_u32(hq_writer *w, uint32_t v) {
    put_u16(w, (uint16_t)(v & 0xFFFF));
    put_u16(w, (uint16_t)(v >> 16));
}
static void put_u64(hq_writer *w, uint64_t v) {
    put_u32(w, (uint32_t)(v & 0xFFFFFFFFu));
    put_u32(w, (uint32_t)(v >> 32));
}
static void put_f32(hq_writer *w, float f) {
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(w, v);
}
static void put_floats(hq_writer *w, const float *f, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) put_f32(w, f[i]);
}

static int printable(const uint8_t *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7E) return 0;
    }
    return 1;
}

static hq_status put_name(hq_writer *w, const char *s, size_t min, size_t max) {
    size_t n = strlen(s);
    if (n < min || n > max || !printable((const uint8_t *)s, n)) return HQ_ERR_RANGE;
    put_u8(w, (uint8_t)n);
    while (*s) put_u8(w, (uint8_t)*s++);
    return HQ_OK;
}

typedef struct {
    const uint8_t *p;
    size_t len, at;
} hq_reader;

static hq_status need(const hq_reader *r, size_t n) { return r->at + n > r->len ? HQ_ERR_LENGTH : HQ_OK; }
static uint8_t u8(hq_reader *r) { return r->p[r->at++]; }
static uint16_t le16(const uint8_t *p) { return (uint16_t)((unsigned)p[0] | (unsigned)p[1] << 8); }
static uint16_t u16(hq_reader *r) {
    uint16_t v = le16(r->p + r->at);
    r->at += 2;
    return v;
}
static uint32_t u32(hq_reader *r) {
    uint32_t lo = u16(r);
    return lo | (uint32_t)u16(r) << 16;
}
static uint64_t u64(hq_reader *r) {
    uint64_t lo = u32(r);
    return lo | (uint64_t)u32(r) << 32;
}
static float f32(hq_reader *r) {
    uint32_t v = u32(r);
    float f;
    memcpy(&f, &v, 4);
    return f;
}
static hq_status get_floats(hq_reader *r, float *out, size_t n) {
    size_t i;
    if (need(r, 4 * n)) return HQ_ERR_LENGTH;
    for (i = 0; i < n; i++) out[i] = f32(r);
    return HQ_OK;
}
static hq_status get_count(hq_reader *r, size_t max, uint8_t *out) {
    if (need(r, 1)) return HQ_ERR_LENGTH;
    *out = u8(r);
    return *out > max ? HQ_ERR_RANGE : HQ_OK;
}
static hq_status get_name(hq_reader *r, char *out, size_t min, size_t max) {
    size_t n;
    if (need(r, 1)) return HQ_ERR_LENGTH;
    n = u8(r);
    if (n < min || n > max) return HQ_ERR_RANGE;
    if (need(r, n)) return HQ_ERR_LENGTH;
    if (!printable(r->p + r->at, n)) return HQ_ERR_RANGE;
    memcpy(out, r->p + r->at, n);
    out[n] = '\0';
    r->at += n;
    return HQ_OK;
}

/* Enum fields: a value this protocol version does not define is out of range. */
static hq_status check_info_head(uint8_t version, uint8_t mode, uint8_t caps) {
    if (version != HQ_PROTOCOL_VERSION || mode > HQ_MODE_EFFORT || (caps | HQ_CAP_KNOWN) != HQ_CAP_KNOWN) {
        return HQ_ERR_RANGE;
    }
    return HQ_OK;
}
static hq_status check_faults(uint16_t faults) {
    return (faults | HQ_FAULT_KNOWN) != HQ_FAULT_KNOWN ? HQ_ERR_RANGE : HQ_OK;
}
static hq_status check_reason(uint8_t reason) { return reason >= HQ_REASON_COUNT ? HQ_ERR_RANGE : HQ_OK; }
static hq_status check_onboard_status(uint8_t status) {
    return status >= HQ_ONBOARD_STATUS_COUNT ? HQ_ERR_RANGE : HQ_OK;
}
static hq_status check_every(uint16_t every) { return every == 0 ? HQ_ERR_RANGE : HQ_OK; }
static hq_status check_error_code(uint8_t code) {
    return code < HQ_ERROR_VERSION || code > HQ_ERROR_ESTOPPED ? HQ_ERR_RANGE : HQ_OK;
}

#define TRY(expr)                        \
    do {                                 \
        hq_status hq_try_ = (expr);      \
        if (hq_try_ != HQ_OK) return hq_try_; \
    } while (0)

/* --- messages ---------------------------------------------------------------------------- */

static hq_status write_payload(const hq_msg *m, hq_writer *w) {
    size_t i;
    switch (m->type) {
    case HQ_HELLO:
    case HQ_ONBOARD_STOP:
        return HQ_OK;
    case HQ_INFO: {
        const hq_info *v = &m->u.info;
        if (v->n_joints > HQ_MAX_JOINTS || v->n_feet > HQ_MAX_FEET) return HQ_ERR_RANGE;
        TRY(check_info_head(v->protocol_version, v->control_mode, v->capabilities));
        put_u8(w, v->protocol_version);
        put_u8(w, v->control_mode);
        put_u8(w, v->capabilities);
        put_u8(w, v->n_feet);
        put_u16(w, v->max_rate_hz);
        put_u16(w, v->state_rate_hz);
        put_u16(w, v->watchdog_ms);
        TRY(put_name(w, v->robot_name, 1, HQ_MAX_ROBOT_NAME));
        put_u8(w, v->n_joints);
        for (i = 0; i < v->n_joints; i++) {
            TRY(put_name(w, v->joints[i].name, 1, HQ_MAX_JOINT_NAME));
            put_f32(w, v->joints[i].lower);
            put_f32(w, v->joints[i].upper);
        }
        return HQ_OK;
    }
    case HQ_COMMAND:
        if (m->u.command.n > HQ_MAX_JOINTS) return HQ_ERR_RANGE;
        put_u32(w, m->u.command.host_time_us);
        put_u8(w, m->u.command.n);
        put_floats(w, m->u.command.targets, m->u.command.n);
        return HQ_OK;
    case HQ_STATE: {
        const hq_state *v = &m->u.state;
        if (v->n_joints > HQ_MAX_JOINTS || v->n_feet > HQ_MAX_FEET) return HQ_ERR_RANGE;
        if ((v->contacts >> v->n_feet) != 0 || (v->blocks & ~HQ_BLOCK_BASE) != 0) return HQ_ERR_RANGE;
        TRY(check_faults(v->faults));
        put_u32(w, v->mcu_time_us);
        put_u16(w, v->last_command_seq);
        put_u16(w, v->faults);
        put_u16(w, v->rx_errors);
        put_u8(w, v->n_joints);
        put_u8(w, v->n_feet);
        put_u8(w, v->contacts);
        put_u8(w, v->blocks);
        put_floats(w, v->quaternion, 4);
        put_floats(w, v->gyro, 3);
        put_floats(w, v->joint_pos, v->n_joints);
        put_floats(w, v->joint_vel, v->n_joints);
        if (v->blocks & HQ_BLOCK_BASE) {
            put_f32(w, v->base_height);
            put_floats(w, v->base_velocity, 3);
        }
        return HQ_OK;
    }
    case HQ_HEARTBEAT:
        put_u32(w, m->u.heartbeat.time_us);
        return HQ_OK;
    case HQ_ESTOP:
    case HQ_SAFE_POSE:
        TRY(check_reason(m->u.stop.reason));
        put_u8(w, m->u.stop.reason);
        return HQ_OK;
    case HQ_ERROR:
        TRY(check_error_code(m->u.error.code));
        put_u8(w, m->u.error.code);
        put_u16(w, m->u.error.seq);
        return put_name(w, m->u.error.text, 0, HQ_MAX_ERROR_TEXT);
    case HQ_ONBOARD_START:
        TRY(check_every(m->u.onboard_start.telemetry_every));
        put_u64(w, m->u.onboard_start.seed);
        put_u32(w, m->u.onboard_start.ticks);
        put_u16(w, m->u.onboard_start.telemetry_every);
        return HQ_OK;
    case HQ_ONBOARD_TELEMETRY: {
        const hq_onboard_telemetry *v = &m->u.telemetry;
        TRY(check_onboard_status(v->status));
        if (v->n_layers > HQ_MAX_LAYERS) return HQ_ERR_RANGE;
        put_u32(w, v->mcu_time_us);
        put_u16(w, v->start_seq);
        put_u8(w, v->status);
        put_u32(w, v->ticks);
        put_u32(w, v->tick_us);
        put_u32(w, v->tick_us_max);
        put_u16(w, v->late_ticks);
        put_u8(w, v->n_layers);
        put_floats(w, v->weight_norms, v->n_layers);
        return HQ_OK;
    }
    default:
        return HQ_ERR_TYPE;
    }
}

/* Each read is checked just before it is made, in wire order, so a frame is rejected for the same
 * reason as by the Python codec (which reads the same way). */
static hq_status read_payload(hq_reader *r, hq_msg *m) {
    size_t i;
    switch (m->type) {
    case HQ_HELLO:
    case HQ_ONBOARD_STOP:
        return HQ_OK;
    case HQ_INFO: {
        hq_info *v = &m->u.info;
        TRY(need(r, 3));
        v->protocol_version = u8(r);
        v->control_mode = u8(r);
        v->capabilities = u8(r);
        TRY(check_info_head(v->protocol_version, v->control_mode, v->capabilities));
        TRY(get_count(r, HQ_MAX_FEET, &v->n_feet));
        TRY(need(r, 6));
        v->max_rate_hz = u16(r);
        v->state_rate_hz = u16(r);
        v->watchdog_ms = u16(r);
        TRY(get_name(r, v->robot_name, 1, HQ_MAX_ROBOT_NAME));
        TRY(get_count(r, HQ_MAX_JOINTS, &v->n_joints));
        for (i = 0; i < v->n_joints; i++) {
            TRY(get_name(r, v->joints[i].name, 1, HQ_MAX_JOINT_NAME));
            TRY(need(r, 8));
            v->joints[i].lower = f32(r);
            v->joints[i].upper = f32(r);
        }
        return HQ_OK;
    }
    case HQ_COMMAND:
        TRY(need(r, 4));
        m->u.command.host_time_us = u32(r);
        TRY(get_count(r, HQ_MAX_JOINTS, &m->u.command.n));
        return get_floats(r, m->u.command.targets, m->u.command.n);
    case HQ_STATE: {
        hq_state *v = &m->u.state;
        TRY(need(r, 10));
        v->mcu_time_us = u32(r);
        v->last_command_seq = u16(r);
        v->faults = u16(r);
        v->rx_errors = u16(r);
        TRY(check_faults(v->faults));
        TRY(get_count(r, HQ_MAX_JOINTS, &v->n_joints));
        TRY(get_count(r, HQ_MAX_FEET, &v->n_feet));
        TRY(need(r, 2));
        v->contacts = u8(r);
        v->blocks = u8(r);
        if ((v->contacts >> v->n_feet) != 0 || (v->blocks & ~HQ_BLOCK_BASE) != 0) return HQ_ERR_RANGE;
        TRY(get_floats(r, v->quaternion, 4));
        TRY(get_floats(r, v->gyro, 3));
        TRY(get_floats(r, v->joint_pos, v->n_joints));
        TRY(get_floats(r, v->joint_vel, v->n_joints));
        if (v->blocks & HQ_BLOCK_BASE) {
            TRY(need(r, 16));
            v->base_height = f32(r);
            TRY(get_floats(r, v->base_velocity, 3));
        }
        return HQ_OK;
    }
    case HQ_HEARTBEAT:
        TRY(need(r, 4));
        m->u.heartbeat.time_us = u32(r);
        return HQ_OK;
    case HQ_ESTOP:
    case HQ_SAFE_POSE:
        TRY(need(r, 1));
        m->u.stop.reason = u8(r);
        return check_reason(m->u.stop.reason);
    case HQ_ERROR:
        TRY(need(r, 3));
        m->u.error.code = u8(r);
        m->u.error.seq = u16(r);
        TRY(check_error_code(m->u.error.code));
        return get_name(r, m->u.error.text, 0, HQ_MAX_ERROR_TEXT);
    case HQ_ONBOARD_START:
        TRY(need(r, 14));
        m->u.onboard_start.seed = u64(r);
        m->u.onboard_start.ticks = u32(r);
        m->u.onboard_start.telemetry_every = u16(r);
        return check_every(m->u.onboard_start.telemetry_every);
    case HQ_ONBOARD_TELEMETRY: {
        hq_onboard_telemetry *v = &m->u.telemetry;
        TRY(need(r, 7));
        v->mcu_time_us = u32(r);
        v->start_seq = u16(r);
        v->status = u8(r);
        TRY(check_onboard_status(v->status));
        TRY(need(r, 14));
        v->ticks = u32(r);
        v->tick_us = u32(r);
        v->tick_us_max = u32(r);
        v->late_ticks = u16(r);
        TRY(get_count(r, HQ_MAX_LAYERS, &v->n_layers));
        return get_floats(r, v->weight_norms, v->n_layers);
    }
    default:
        return HQ_ERR_TYPE;
    }
}

hq_status hq_encode(const hq_msg *msg, uint8_t *out, size_t cap, size_t *out_len) {
    uint8_t raw[HQ_MAX_FRAME];
    hq_writer w;
    size_t n;
    uint16_t crc;
    w.p = raw;
    w.len = 0;
    w.cap = sizeof raw;
    put_u8(&w, HQ_PROTOCOL_VERSION);
    put_u8(&w, msg->type);
    put_u16(&w, msg->seq);
    TRY(write_payload(msg, &w));
    if (w.len + 2 > sizeof raw) return HQ_ERR_RANGE;
    crc = hq_crc16(raw, w.len);
    put_u16(&w, crc);
    if (w.len + w.len / 254 + 2 > cap) return HQ_ERR_BUFFER;
    n = hq_cobs_encode(raw, w.len, out);
    out[n++] = 0;
    *out_len = n;
    return HQ_OK;
}

hq_status hq_decode(const uint8_t *frame, size_t len, hq_msg *msg) {
    uint8_t raw[HQ_MAX_ENCODED];
    size_t n;
    hq_reader r;
    if (len > HQ_MAX_ENCODED) return HQ_ERR_OVERFLOW;
    TRY(hq_cobs_decode(frame, len, raw, &n));
    if (n < 6) return HQ_ERR_SHORT;
    if (hq_crc16(raw, n - 2) != le16(raw + n - 2)) return HQ_ERR_CRC;
    if (raw[0] != HQ_PROTOCOL_VERSION) return HQ_ERR_VERSION;
    memset(msg, 0, sizeof *msg);
    msg->type = raw[1];
    msg->seq = le16(raw + 2);
    r.p = raw + 4;
    r.len = n - 6;
    r.at = 0;
    TRY(read_payload(&r, msg));
    return r.at == r.len ? HQ_OK : HQ_ERR_LENGTH;
}

int hq_leading_zero(uint8_t type) {
    return type == HQ_HELLO || type == HQ_INFO || type == HQ_ESTOP || type == HQ_SAFE_POSE || type == HQ_ERROR ||
           type == HQ_ONBOARD_START || type == HQ_ONBOARD_STOP;
}

void hq_deframer_init(hq_deframer *d) {
    d->len = 0;
    d->discarding = 1; /* booted mid-stream maybe: wait for the first 0x00 */
    d->complete = 0;
}

int hq_deframer_push(hq_deframer *d, uint8_t byte) {
    if (d->complete) {
        d->len = 0;
        d->complete = 0;
    }
    if (byte == 0) {
        if (d->discarding || d->len == 0) { /* end of a discarded run, or an empty frame */
            d->discarding = 0;
            d->len = 0;
            return HQ_DEFRAME_NONE;
        }
        d->complete = 1;
        return HQ_DEFRAME_FRAME;
    }
    if (d->discarding) return HQ_DEFRAME_NONE;
    if (d->len == sizeof d->buf) {
        d->discarding = 1;
        d->len = 0;
        return HQ_DEFRAME_OVERFLOW;
    }
    d->buf[d->len++] = byte;
    return HQ_DEFRAME_NONE;
}
