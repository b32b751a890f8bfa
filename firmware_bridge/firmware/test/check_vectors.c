/*
 * Test driver for hq_protocol.c, run by tests/test_bridge_firmware.py (not part of the firmware).
 *
 * Reads one encoded frame per line on stdin (hex, without the 0x00 delimiter), decodes it with
 * hq_decode and prints one JSON line: {"status": "ok", "type": T, "seq": S, "fields": {...},
 * "wire": HEX, "leading_zero": 0|1} with the fields named as in the Python codec, the frame re-encoded by
 * hq_encode and whether its type gets a leading 0x00, or {"status": REASON, "code": N} with the reason
 * the frame was rejected and its hq_status number. Floats print as C99 hex floats
 * (exact). Build: gcc -std=c99 -I../hq_servo_robot/src check_vectors.c ../hq_servo_robot/src/hq_protocol.c
 */
#include <stdio.h>
#include <string.h>

#include "hq_protocol.h"

static const char *const REASONS[] = {"ok",    "cobs",   "short", "crc",      "version",
                                      "type",  "length", "range", "overflow", "buffer"};

static void floats(const char *key, const float *v, size_t n) {
    size_t i;
    printf("\"%s\": [", key);
    for (i = 0; i < n; i++) printf("%s\"%a\"", i ? ", " : "", (double)v[i]);
    printf("]");
}

static void string(const char *s) {
    printf("\"");
    for (; *s; s++) printf(*s == '"' || *s == '\\' ? "\\%c" : "%c", *s);
    printf("\"");
}

static void text(const char *key, const char *s) {
    printf("\"%s\": ", key);
    string(s);
}

static void print_fields(const hq_msg *m) {
    size_t i;
    switch (m->type) {
    case HQ_INFO: {
        const hq_info *v = &m->u.info;
        text("robot_name", v->robot_name);
        printf(", \"control_mode\": %u, \"joint_names\": [", v->control_mode);
        for (i = 0; i < v->n_joints; i++) {
            printf("%s", i ? ", " : "");
            string(v->joints[i].name);
        }
        printf("], \"joint_lower\": [");
        for (i = 0; i < v->n_joints; i++) printf("%s\"%a\"", i ? ", " : "", (double)v->joints[i].lower);
        printf("], \"joint_upper\": [");
        for (i = 0; i < v->n_joints; i++) printf("%s\"%a\"", i ? ", " : "", (double)v->joints[i].upper);
        printf("], \"n_feet\": %u, \"max_rate_hz\": %u, \"state_rate_hz\": %u, \"watchdog_ms\": %u, "
               "\"capabilities\": %u, \"protocol_version\": %u",
               v->n_feet, v->max_rate_hz, v->state_rate_hz, v->watchdog_ms, v->capabilities,
               v->protocol_version);
        break;
    }
    case HQ_COMMAND:
        printf("\"host_time_us\": %lu, ", (unsigned long)m->u.command.host_time_us);
        floats("targets", m->u.command.targets, m->u.command.n);
        break;
    case HQ_STATE: {
        const hq_state *v = &m->u.state;
        printf("\"mcu_time_us\": %lu, \"last_command_seq\": %u, \"faults\": %u, \"rx_errors\": %u, ",
               (unsigned long)v->mcu_time_us, v->last_command_seq, v->faults, v->rx_errors);
        floats("joint_pos", v->joint_pos, v->n_joints);
        printf(", ");
        floats("joint_vel", v->joint_vel, v->n_joints);
        printf(", ");
        floats("quaternion", v->quaternion, 4);
        printf(", ");
        floats("gyro", v->gyro, 3);
        printf(", \"n_feet\": %u, \"contacts\": %u, \"base\": ", v->n_feet, v->contacts);
        if (v->blocks & HQ_BLOCK_BASE) {
            printf("{\"height\": \"%a\", ", (double)v->base_height);
            floats("velocity", v->base_velocity, 3);
            printf("}");
        } else {
            printf("null");
        }
        break;
    }
    case HQ_HEARTBEAT:
        printf("\"time_us\": %lu", (unsigned long)m->u.heartbeat.time_us);
        break;
    case HQ_ESTOP:
    case HQ_SAFE_POSE:
        printf("\"reason\": %u", m->u.stop.reason);
        break;
    case HQ_ERROR:
        printf("\"code\": %u, \"seq\": %u, ", m->u.error.code, m->u.error.seq);
        text("text", m->u.error.text);
        break;
    case HQ_ONBOARD_START:
        printf("\"seed\": %llu, \"ticks\": %lu, \"telemetry_every\": %u",
               (unsigned long long)m->u.onboard_start.seed, (unsigned long)m->u.onboard_start.ticks,
               m->u.onboard_start.telemetry_every);
        break;
    case HQ_ONBOARD_TELEMETRY: {
        const hq_onboard_telemetry *v = &m->u.telemetry;
        printf("\"mcu_time_us\": %lu, \"start_seq\": %u, \"status\": %u, \"ticks\": %lu, \"tick_us\": %lu, "
               "\"tick_us_max\": %lu, \"late_ticks\": %u, ",
               (unsigned long)v->mcu_time_us, v->start_seq, v->status, (unsigned long)v->ticks,
               (unsigned long)v->tick_us, (unsigned long)v->tick_us_max, v->late_ticks);
        floats("weight_norms", v->weight_norms, v->n_layers);
        break;
    }
    default: /* HQ_HELLO, HQ_ONBOARD_STOP: no fields */
        break;
    }
}

static int unhex(const char *line, uint8_t *out, size_t cap, size_t *n) {
    unsigned byte;
    *n = 0;
    while (line[0] && line[0] != '\n' && line[0] != '\r') {
        if (*n == cap || sscanf(line, "%2x", &byte) != 1) return 0;
        out[(*n)++] = (uint8_t)byte;
        line += 2;
    }
    return 1;
}

int main(void) {
    static char line[2 * 4 * HQ_MAX_ENCODED + 8]; /* frames up to 4 times too long, to test overflow */
    static uint8_t frame[4 * HQ_MAX_ENCODED], wire[HQ_MAX_WIRE];
    static hq_msg msg;
    size_t n, wire_len, i;
    hq_status status;
    while (fgets(line, sizeof line, stdin)) {
        if (!unhex(line, frame, sizeof frame, &n)) {
            printf("{\"status\": \"bad input line\"}\n");
            continue;
        }
        status = hq_decode(frame, n, &msg);
        if (status != HQ_OK) {
            printf("{\"status\": \"%s\", \"code\": %d}\n", REASONS[status], (int)status);
            continue;
        }
        printf("{\"status\": \"ok\", \"type\": %u, \"seq\": %u, \"fields\": {", msg.type, msg.seq);
        print_fields(&msg);
        status = hq_encode(&msg, wire, sizeof wire, &wire_len);
        printf("}, \"wire\": \"");
        for (i = 0; status == HQ_OK && i < wire_len; i++) printf("%02x", wire[i]);
        printf("\", \"encode_status\": \"%s\", \"leading_zero\": %d}\n", REASONS[status],
               hq_leading_zero(msg.type));
    }
    return 0;
}
