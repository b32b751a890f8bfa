/*
 * hq_servo_robot: reference firmware for an 8-servo quadruped speaking the hebbian-quadruped serial
 * protocol v1 (docs/protocol.md), in position mode.
 *
 * Hardware: a board with >= 8 KB RAM (Arduino Mega 2560, Teensy 4, ESP32, RP2040), a PCA9685
 * 16-channel PWM servo driver and a BNO055 IMU on I2C, one foot switch per leg to ground.
 * Libraries: Adafruit PWM Servo Driver, Adafruit BNO055 (and Adafruit Unified Sensor).
 *
 * NOT TESTED ON HARDWARE: see ../README.md for what was and was not checked.
 *
 * Loop: read bytes -> frames -> handle HELLO / COMMAND / HEARTBEAT / ESTOP / SAFE_POSE; every
 * cycle move each servo towards its goal (the last COMMAND, or the safe pose) at a bounded speed;
 * at STATE_RATE_HZ send STATE. No COMMAND for WATCHDOG_MS -> safe pose. ESTOP -> servos limp
 * (PWM off) until the next HELLO. A hardware watchdog resets the board if the loop hangs (AVR).
 */
#define HQ_MAX_JOINTS 8
#include <Adafruit_BNO055.h>
#include <Adafruit_PWMServoDriver.h>
#include <Wire.h>
#include <math.h>
#if defined(__AVR__)
#include <avr/wdt.h>
#endif

#include "src/hq_protocol.h"

/* --- the robot: edit for your build ------------------------------------------------------- */
static const char ROBOT_NAME[] = "servo8";
static const uint8_t N_JOINTS = 8;
static const char *const JOINT_NAMES[N_JOINTS] = {"hip_1", "knee_1", "hip_2", "knee_2",
                                                  "hip_3", "knee_3", "hip_4", "knee_4"};
static const float JOINT_LOWER[N_JOINTS] = {-0.6f, -0.2f, -0.6f, -1.4f, -0.6f, -1.4f, -0.6f, -0.2f}; /* rad */
static const float JOINT_UPPER[N_JOINTS] = {0.6f, 1.4f, 0.6f, 0.2f, 0.6f, 0.2f, 0.6f, 1.4f};         /* rad */
static const float SAFE_POSE[N_JOINTS] = {0.0f, 0.9f, 0.0f, -0.9f, 0.0f, -0.9f, 0.0f, 0.9f};         /* rad */
/* Servo i on PCA9685 channel SERVO_CHANNEL[i]: pulse = SERVO_CENTER_US + SERVO_US_PER_RAD * angle.
 * A negative SERVO_US_PER_RAD mirrors a servo mounted the other way round. */
static const uint8_t SERVO_CHANNEL[N_JOINTS] = {0, 1, 2, 3, 4, 5, 6, 7};
static const float SERVO_CENTER_US[N_JOINTS] = {1500, 1500, 1500, 1500, 1500, 1500, 1500, 1500};
static const float SERVO_US_PER_RAD[N_JOINTS] = {636.6f, 636.6f, -636.6f, -636.6f,
                                                 636.6f, 636.6f, -636.6f, -636.6f};
static const float MAX_SPEED = 6.0f; /* rad/s: how fast any servo may move (safe pose included) */
static const uint8_t N_FEET = 4;
static const uint8_t FOOT_PINS[N_FEET] = {2, 3, 4, 5}; /* switch to ground: LOW = contact */
static const uint32_t BAUD = 1000000;
static const uint16_t STATE_RATE_HZ = 200;
static const uint16_t MAX_RATE_HZ = 200;
static const uint16_t WATCHDOG_MS = 100;
static const uint16_t SERVO_RATE_HZ = 100; /* PWM updates over I2C; hobby servos read 50 Hz pulses */

/* --- state --------------------------------------------------------------------------------- */
static Adafruit_PWMServoDriver pwm;
static Adafruit_BNO055 bno(55, 0x28);
static bool imu_ok = false;
static hq_deframer rx;
static hq_msg msg; /* one message buffer: decoded input, then each reply in turn */
static uint8_t wire[HQ_MAX_WIRE];
static uint16_t tx_seq = 0;

static bool session = false, idle = true, commanding = false, estop = false, watchdog_tripped = false;
static uint16_t faults_since_state = 0, rx_errors = 0, last_command_seq = 0;
static uint32_t last_command_ms = 0, last_state_us = 0, last_servo_us = 0;
static float target[N_JOINTS], position[N_JOINTS], velocity[N_JOINTS];

/* --- output -------------------------------------------------------------------------------- */
static void send(uint8_t type) {
    size_t len;
    msg.type = type;
    msg.seq = tx_seq++;
    if (hq_encode(&msg, wire, sizeof wire, &len) != HQ_OK) return;
    if (hq_leading_zero(type)) Serial.write((uint8_t)0); /* INFO, ERROR: the host may have just opened
                                                             or flushed its port mid-frame */
    Serial.write(wire, len);
}

static void send_error(uint8_t code, uint16_t seq, const char *text) {
    msg.u.error.code = code;
    msg.u.error.seq = seq;
    strncpy(msg.u.error.text, text, HQ_MAX_ERROR_TEXT);
    msg.u.error.text[HQ_MAX_ERROR_TEXT] = '\0';
    send(HQ_ERROR);
}

static void send_info(void) {
    hq_info *info = &msg.u.info;
    uint8_t i;
    info->protocol_version = HQ_PROTOCOL_VERSION;
    info->control_mode = HQ_MODE_POSITION;
    info->capabilities = 0; /* no base estimate: no height or linear velocity in STATE */
    info->n_feet = N_FEET;
    info->max_rate_hz = MAX_RATE_HZ;
    info->state_rate_hz = STATE_RATE_HZ;
    info->watchdog_ms = WATCHDOG_MS;
    strncpy(info->robot_name, ROBOT_NAME, HQ_MAX_ROBOT_NAME);
    info->robot_name[HQ_MAX_ROBOT_NAME] = '\0';
    info->n_joints = N_JOINTS;
    for (i = 0; i < N_JOINTS; i++) {
        strncpy(info->joints[i].name, JOINT_NAMES[i], HQ_MAX_JOINT_NAME);
        info->joints[i].name[HQ_MAX_JOINT_NAME] = '\0';
        info->joints[i].lower = JOINT_LOWER[i];
        info->joints[i].upper = JOINT_UPPER[i];
    }
    send(HQ_INFO);
}

static uint16_t faults(void) {
    uint16_t bits = faults_since_state;
    if (estop) {
        bits |= HQ_FAULT_ESTOP;
    } else if (!commanding) {
        bits |= HQ_FAULT_SAFE_POSE;
        if (watchdog_tripped) bits |= HQ_FAULT_WATCHDOG;
    }
    if (idle) bits |= HQ_FAULT_IDLE;
    if (!imu_ok) bits |= HQ_FAULT_IMU;
    return bits;
}

static void send_state(uint32_t now_us) {
    hq_state *s = &msg.u.state;
    uint8_t i;
    s->mcu_time_us = now_us;
    s->last_command_seq = last_command_seq;
    s->faults = faults();
    s->rx_errors = rx_errors;
    s->n_joints = N_JOINTS;
    s->n_feet = N_FEET;
    s->blocks = 0;
    s->contacts = 0;
    for (i = 0; i < N_FEET; i++) {
        if (digitalRead(FOOT_PINS[i]) == LOW) s->contacts |= (uint8_t)(1u << i);
    }
    /* Hobby servos report nothing back: the position is the one commanded to the servo (after
     * the speed limit), the velocity its rate of change. Use servos with feedback for better. */
    for (i = 0; i < N_JOINTS; i++) {
        s->joint_pos[i] = position[i];
        s->joint_vel[i] = velocity[i];
    }
    if (imu_ok) {
        imu::Quaternion q = bno.getQuat();
        imu::Vector<3> g = bno.getVector(Adafruit_BNO055::VECTOR_GYROSCOPE); /* deg/s by default */
        s->quaternion[0] = (float)q.w();
        s->quaternion[1] = (float)q.x();
        s->quaternion[2] = (float)q.y();
        s->quaternion[3] = (float)q.z();
        for (i = 0; i < 3; i++) s->gyro[i] = (float)(g[i] * DEG_TO_RAD);
    } else {
        s->quaternion[0] = 1.0f;
        s->quaternion[1] = s->quaternion[2] = s->quaternion[3] = 0.0f;
        s->gyro[0] = s->gyro[1] = s->gyro[2] = 0.0f;
    }
    faults_since_state = 0;
    send(HQ_STATE);
}

/* --- input --------------------------------------------------------------------------------- */
static void handle_command(uint16_t seq) {
    uint8_t i;
    if (!session) {
        send_error(HQ_ERROR_NOT_READY, seq, "send HELLO first");
        return;
    }
    if (estop) {
        send_error(HQ_ERROR_ESTOPPED, seq, "emergency stop latched; send HELLO to clear");
        return;
    }
    if (msg.u.command.n != N_JOINTS) {
        send_error(HQ_ERROR_PAYLOAD, seq, "wrong number of targets");
        return;
    }
    for (i = 0; i < N_JOINTS; i++) {
        if (!isfinite(msg.u.command.targets[i])) {
            send_error(HQ_ERROR_PAYLOAD, seq, "non-finite target");
            return;
        }
    }
    for (i = 0; i < N_JOINTS; i++) {
        float t = msg.u.command.targets[i];
        if (t < JOINT_LOWER[i] || t > JOINT_UPPER[i]) faults_since_state |= HQ_FAULT_CLAMPED;
        target[i] = t < JOINT_LOWER[i] ? JOINT_LOWER[i] : (t > JOINT_UPPER[i] ? JOINT_UPPER[i] : t);
    }
    commanding = true;
    idle = false;
    watchdog_tripped = false;
    last_command_ms = millis();
    last_command_seq = seq;
}

static void handle_frame(void) {
    hq_status status = hq_decode(rx.buf, rx.len, &msg);
    if (status != HQ_OK) {
        rx_errors++;
        faults_since_state |= HQ_FAULT_RX_ERROR;
        if (status == HQ_ERR_VERSION) send_error(HQ_ERROR_VERSION, 0, "firmware speaks protocol v1");
        return;
    }
    switch (msg.type) {
    case HQ_HELLO:
        session = true;
        idle = true;
        estop = false;
        commanding = false;
        watchdog_tripped = false;
        send_info();
        break;
    case HQ_HEARTBEAT:
        send(HQ_HEARTBEAT); /* echo: msg still holds the received time */
        break;
    case HQ_ESTOP:
        estop = true;
        commanding = false;
        break;
    case HQ_SAFE_POSE:
        commanding = false;
        break;
    case HQ_COMMAND:
        handle_command(msg.seq);
        break;
    default:
        send_error(HQ_ERROR_TYPE, msg.seq, "unexpected message type");
        break;
    }
}

/* --- servos -------------------------------------------------------------------------------- */
/* Called at SERVO_RATE_HZ: each servo moves towards its goal (the commanded target, or the safe
 * pose) by at most MAX_SPEED * dt, so neither a command nor the safe pose makes it jump. */
static void write_servo(uint8_t i) {
    float us = SERVO_CENTER_US[i] + SERVO_US_PER_RAD[i] * position[i];
    pwm.writeMicroseconds(SERVO_CHANNEL[i], (uint16_t)us);
}

static void servo_limp(uint8_t i) { pwm.setPWM(SERVO_CHANNEL[i], 0, 4096); /* full off: no pulses */ }

static void update_servos(uint32_t now_us) {
    float dt = (float)(now_us - last_servo_us) * 1e-6f;
    float step = MAX_SPEED * dt;
    uint8_t i;
    last_servo_us = now_us;
    for (i = 0; i < N_JOINTS; i++) {
        float goal = commanding ? target[i] : SAFE_POSE[i];
        float move = goal - position[i];
        if (estop) {
            velocity[i] = 0.0f;
            servo_limp(i);
            continue;
        }
        move = move > step ? step : (move < -step ? -step : move);
        position[i] += move;
        velocity[i] = dt > 0.0f ? move / dt : 0.0f;
        write_servo(i);
    }
}

/* --- Arduino entry points ------------------------------------------------------------------ */
void setup() {
    uint8_t i;
    Serial.begin(BAUD);
    Wire.begin();
    Wire.setClock(400000);
    pwm.begin();
    pwm.setOscillatorFrequency(27000000);
    pwm.setPWMFreq(50);
    imu_ok = bno.begin();
    if (imu_ok) bno.setExtCrystalUse(true);
    for (i = 0; i < N_FEET; i++) pinMode(FOOT_PINS[i], INPUT_PULLUP);
    for (i = 0; i < N_JOINTS; i++) {
        position[i] = target[i] = SAFE_POSE[i]; /* assumed: the robot was parked in its safe pose */
        velocity[i] = 0.0f;
        write_servo(i);
    }
    hq_deframer_init(&rx);
    last_servo_us = last_state_us = micros();
    Serial.write((uint8_t)0); /* lets the host's deframer sync */
#if defined(__AVR__)
    wdt_enable(WDTO_250MS);
#endif
}

void loop() {
    uint32_t now_us;
    while (Serial.available() > 0) {
        int result = hq_deframer_push(&rx, (uint8_t)Serial.read());
        if (result == HQ_DEFRAME_FRAME) {
            handle_frame();
        } else if (result == HQ_DEFRAME_OVERFLOW) {
            rx_errors++;
            faults_since_state |= HQ_FAULT_RX_ERROR;
        }
    }
    if (commanding && millis() - last_command_ms > WATCHDOG_MS) {
        commanding = false;
        watchdog_tripped = true;
    }
    now_us = micros();
    if (now_us - last_servo_us >= 1000000UL / SERVO_RATE_HZ) update_servos(now_us);
    if (now_us - last_state_us >= 1000000UL / STATE_RATE_HZ) {
        last_state_us += 1000000UL / STATE_RATE_HZ;
        if (now_us - last_state_us > 1000000UL / STATE_RATE_HZ) {
            last_state_us = now_us; /* fell behind: skip, don't burst */
            faults_since_state |= HQ_FAULT_OVERRUN;
        }
        send_state(now_us);
    }
#if defined(__AVR__)
    wdt_reset();
#endif
}
