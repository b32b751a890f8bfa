/*
 * hq_protocol: the hebbian-quadruped serial protocol, version 1, in portable C99.
 *
 * Frames on the wire: COBS(header | payload | crc16) followed by one 0x00 byte.
 *   header  u8 version, u8 type, u16 sequence (little-endian)
 *   crc16   CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor)
 *           over header and payload, little-endian
 * Floats are IEEE-754 binary32, little-endian. docs/protocol.md describes every field and unit.
 *
 * No dynamic memory, no stdio; the same code runs on a microcontroller and in the host tests,
 * which check it byte for byte against the Python codec on firmware/test_vectors.json.
 * Define HQ_MAX_JOINTS before including this header to shrink the buffers on small MCUs.
 */
#ifndef HQ_PROTOCOL_H
#define HQ_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HQ_PROTOCOL_VERSION 1

#ifndef HQ_MAX_JOINTS
#define HQ_MAX_JOINTS 32
#endif
#define HQ_MAX_FEET 8
#define HQ_MAX_ROBOT_NAME 31
#define HQ_MAX_JOINT_NAME 15
#define HQ_MAX_ERROR_TEXT 63
#define HQ_MAX_LAYERS 8 /* weight norms an ONBOARD_TELEMETRY carries */
/* INFO is the longest message: 43 fixed bytes plus 24 per joint. */
#define HQ_MAX_PAYLOAD (43 + 24 * HQ_MAX_JOINTS)
#define HQ_MAX_FRAME (4 + HQ_MAX_PAYLOAD + 2)
#define HQ_MAX_ENCODED (HQ_MAX_FRAME + HQ_MAX_FRAME / 254 + 1)
#define HQ_MAX_WIRE (HQ_MAX_ENCODED + 1) /* with the 0x00 delimiter */

/* Why a frame was rejected (the Python codec's FrameError.reason; its REASONS lists them in the
 * order of these codes, which are part of the protocol: docs/protocol.md). hq_decode checks
 * overflow first, then cobs, short, crc, version, type, and length/range as it reads the payload. */
typedef enum {
    HQ_OK = 0,
    HQ_ERR_COBS,     /* malformed COBS block */
    HQ_ERR_SHORT,    /* fewer bytes than header and crc */
    HQ_ERR_CRC,      /* checksum mismatch */
    HQ_ERR_VERSION,  /* another protocol version */
    HQ_ERR_TYPE,     /* unknown message type */
    HQ_ERR_LENGTH,   /* payload shorter or longer than its counts say */
    HQ_ERR_RANGE,    /* a count, name or flag out of range */
    HQ_ERR_OVERFLOW, /* frame longer than HQ_MAX_ENCODED */
    HQ_ERR_BUFFER    /* (encode) output buffer too small */
} hq_status;

enum {
    HQ_HELLO = 0x01,
    HQ_INFO = 0x02,
    HQ_COMMAND = 0x10,
    HQ_STATE = 0x11,
    HQ_HEARTBEAT = 0x20,
    HQ_ESTOP = 0x30,
    HQ_SAFE_POSE = 0x31,
    HQ_ONBOARD_START = 0x40,
    HQ_ONBOARD_STOP = 0x41,
    HQ_ONBOARD_TELEMETRY = 0x42,
    HQ_ERROR = 0x7F
};

enum { HQ_MODE_POSITION = 0, HQ_MODE_EFFORT = 1 };
enum {
    HQ_CAP_BASE_ESTIMATE = 0x01,
    HQ_CAP_ONBOARD = 0x02, /* the robot runs a genome's network itself */
    HQ_CAP_NO_YAW = 0x04,  /* its orientation has no yaw (pitch and roll only; gyro z unknown) */
    HQ_CAP_KNOWN = 0x07    /* any other bit in INFO.capabilities: HQ_ERR_RANGE */
};
enum { HQ_BLOCK_BASE = 0x01 };

enum {
    HQ_FAULT_SAFE_POSE = 0x0001,
    HQ_FAULT_WATCHDOG = 0x0002,
    HQ_FAULT_ESTOP = 0x0004,
    HQ_FAULT_IDLE = 0x0008,
    HQ_FAULT_CLAMPED = 0x0010,
    HQ_FAULT_RX_ERROR = 0x0020,
    HQ_FAULT_IMU = 0x0040,
    HQ_FAULT_OVERRUN = 0x0080,
    HQ_FAULT_KNOWN = 0x00FF /* any other bit in STATE.faults: HQ_ERR_RANGE */
};

enum {
    HQ_REASON_OPERATOR = 0,
    HQ_REASON_HOST_FAULT,
    HQ_REASON_STATE_TIMEOUT,
    HQ_REASON_ORIENTATION,
    HQ_REASON_NON_FINITE,
    HQ_REASON_ROBOT_FAULT,
    HQ_REASON_COUNT /* a reason >= this: HQ_ERR_RANGE */
};

enum {
    HQ_ERROR_VERSION = 1,
    HQ_ERROR_TYPE,
    HQ_ERROR_PAYLOAD,
    HQ_ERROR_NOT_READY,
    HQ_ERROR_ESTOPPED /* a code outside HQ_ERROR_VERSION..HQ_ERROR_ESTOPPED: HQ_ERR_RANGE */
};

typedef struct {
    char name[HQ_MAX_JOINT_NAME + 1];
    float lower; /* rad */
    float upper; /* rad */
} hq_joint_info;

typedef struct {
    uint8_t protocol_version;
    uint8_t control_mode; /* HQ_MODE_* */
    uint8_t capabilities; /* HQ_CAP_* */
    uint8_t n_feet;
    uint16_t max_rate_hz;
    uint16_t state_rate_hz;
    uint16_t watchdog_ms;
    char robot_name[HQ_MAX_ROBOT_NAME + 1];
    uint8_t n_joints;
    hq_joint_info joints[HQ_MAX_JOINTS];
} hq_info;

typedef struct {
    uint32_t host_time_us;
    uint8_t n;
    float targets[HQ_MAX_JOINTS]; /* rad (position mode) or [-1, 1] (effort mode) */
} hq_command;

typedef struct {
    uint32_t mcu_time_us;
    uint16_t last_command_seq;
    uint16_t faults; /* HQ_FAULT_* */
    uint16_t rx_errors;
    uint8_t n_joints;
    uint8_t n_feet;
    uint8_t contacts; /* bit k: foot k on the ground */
    uint8_t blocks;   /* HQ_BLOCK_*: which optional blocks follow */
    float quaternion[4]; /* w x y z, body to world */
    float gyro[3];       /* rad/s, body frame */
    float joint_pos[HQ_MAX_JOINTS]; /* rad */
    float joint_vel[HQ_MAX_JOINTS]; /* rad/s */
    float base_height;      /* m (HQ_BLOCK_BASE) */
    float base_velocity[3]; /* m/s, world frame (HQ_BLOCK_BASE) */
} hq_state;

typedef struct {
    uint32_t time_us;
} hq_heartbeat;

typedef struct {
    uint8_t reason; /* HQ_REASON_* (ESTOP and SAFE_POSE) */
} hq_stop;

/* ONBOARD_TELEMETRY.status: the lifetime's phase while it runs, then why it ended. */
enum {
    HQ_ONBOARD_STARTING = 0, /* ramping to the neutral stance and settling: no network tick yet */
    HQ_ONBOARD_RUNNING,      /* the network drives the joints */
    HQ_ONBOARD_DONE,         /* the ticks ONBOARD_START asked for ran */
    HQ_ONBOARD_STOPPED,      /* ONBOARD_STOP, or a new HELLO */
    HQ_ONBOARD_SAFE_POSE,    /* SAFE_POSE from the host */
    HQ_ONBOARD_ESTOP,        /* ESTOP from the host */
    HQ_ONBOARD_WATCHDOG,     /* the host link went silent */
    HQ_ONBOARD_ORIENTATION,  /* roll or pitch beyond the limit, or a non-finite orientation */
    HQ_ONBOARD_NON_FINITE,   /* the network produced NaN or infinity */
    HQ_ONBOARD_IMU,          /* the IMU stopped answering */
    HQ_ONBOARD_STATUS_COUNT  /* a status >= this: HQ_ERR_RANGE */
};

typedef struct {
    uint64_t seed;            /* PCG32 seed of the initial weights */
    uint32_t ticks;           /* network ticks to run; 0: until ONBOARD_STOP */
    uint16_t telemetry_every; /* control ticks between ONBOARD_TELEMETRY frames, >= 1 */
} hq_onboard_start;

typedef struct {
    uint32_t mcu_time_us;
    uint16_t start_seq; /* seq of the ONBOARD_START that began the lifetime */
    uint8_t status;     /* HQ_ONBOARD_* */
    uint32_t ticks;     /* network ticks run */
    uint32_t tick_us;   /* the last tick's duration */
    uint32_t tick_us_max;
    uint16_t late_ticks; /* ticks started a period or more late */
    uint8_t n_layers;
    float weight_norms[HQ_MAX_LAYERS]; /* Frobenius norm of each layer's weights */
} hq_onboard_telemetry;

typedef struct {
    uint8_t code; /* HQ_ERROR_* */
    uint16_t seq; /* the offending frame's sequence number */
    char text[HQ_MAX_ERROR_TEXT + 1];
} hq_error;

typedef struct {
    uint8_t type; /* HQ_HELLO ... HQ_ERROR, HQ_ONBOARD_* */
    uint16_t seq;
    union {
        hq_info info;
        hq_command command;
        hq_state state;
        hq_heartbeat heartbeat;
        hq_stop stop; /* HQ_ESTOP, HQ_SAFE_POSE */
        hq_error error;
        hq_onboard_start onboard_start;
        hq_onboard_telemetry telemetry;
    } u;
} hq_msg;

/* CRC-16/CCITT-FALSE; check value of "123456789" is 0x29B1. */
uint16_t hq_crc16(const uint8_t *data, size_t len);

/* COBS without delimiter. out must hold len + len / 254 + 1 bytes; returns the encoded length. */
size_t hq_cobs_encode(const uint8_t *in, size_t len, uint8_t *out);
/* out must hold len bytes. */
hq_status hq_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t *out_len);

/* The whole wire frame, 0x00 delimiter included, into out[0..*out_len). */
hq_status hq_encode(const hq_msg *msg, uint8_t *out, size_t cap, size_t *out_len);
/* One frame as split by the deframer (no delimiter). */
hq_status hq_decode(const uint8_t *frame, size_t len, hq_msg *msg);

/* 1 for the types whose sender puts a 0x00 before the frame (HELLO, INFO, ESTOP, SAFE_POSE, ERROR,
 * ONBOARD_START, ONBOARD_STOP):
 * a receiver that just opened its port discards bytes up to its first 0x00, and these must arrive. */
int hq_leading_zero(uint8_t type);

/* Byte-by-byte frame splitter for a UART receive loop. It starts out of sync and discards bytes
 * up to the first 0x00, so senders put a 0x00 before their first frame. */
typedef struct {
    uint8_t buf[HQ_MAX_ENCODED];
    size_t len;
    uint8_t discarding; /* until the next 0x00: at start, and after an overflow */
    uint8_t complete;    /* buf holds a frame returned by the last push */
} hq_deframer;

enum { HQ_DEFRAME_NONE = 0, HQ_DEFRAME_FRAME = 1, HQ_DEFRAME_OVERFLOW = 2 };

void hq_deframer_init(hq_deframer *d);
/* HQ_DEFRAME_FRAME: d->buf[0..d->len) holds a frame until the next push;
 * HQ_DEFRAME_OVERFLOW: a run longer than HQ_MAX_ENCODED was discarded (reported once). */
int hq_deframer_push(hq_deframer *d, uint8_t byte);

#ifdef __cplusplus
}
#endif

#endif /* HQ_PROTOCOL_H */
