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
 *
 * On-board mode (HQ_ONBOARD 1, docs/protocol.md): the board runs a genome's plastic network itself. On
 * ONBOARD_START it ramps to the neutral stance, settles, then every HQ_PERIOD_US reads the IMU and the
 * servo angles into the genome's observation, ticks the network and sends its command through the same
 * rules the host applies (calibration, joint limits, slew limit, tilt limit); HEARTBEAT feeds the
 * watchdog; ONBOARD_TELEMETRY reports the lifetime. It needs a 32-bit board (the servo-quad network is
 * about 14 KB of RAM and 56 KB of flash: docs/deploy.md) and, in src/, the genome's header and the
 * plastic tick: `make -C firmware_bridge/firmware/plastic sketch GENOME_DIR=folder-with-genome.h`.
 */
#ifndef HQ_ONBOARD
#define HQ_ONBOARD 0 /* 1: on-board mode (a 32-bit board; see above) */
#endif
#define HQ_MAX_JOINTS 8
#include <Adafruit_BNO055.h>
#include <Adafruit_PWMServoDriver.h>
#include <Wire.h>
#include <math.h>
#if defined(__AVR__)
#include <avr/wdt.h>
#endif

#include "src/hq_protocol.h"
#if HQ_ONBOARD
#if defined(__AVR__)
#error "on-board mode needs a 32-bit board with tens of KB of RAM: an AVR does not hold the network"
#endif
#include "src/hq_onboard.h"
#endif

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
#if HQ_ONBOARD
/* On-board mode: the robot config's calibration and safety (as in firmware_bridge/robots/servo-quad.yaml and
 * its calibration file), in this sketch's joint order and rad; limits within JOINT_LOWER/JOINT_UPPER. */
static const hq_onboard_robot ONBOARD_ROBOT = {
    {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f},                 /* offset: the neutral stance, rad */
    {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f},                 /* sign: robot vs genome direction */
    {0.7f, 0.7f, 0.7f, 0.7f, 0.7f, 0.7f, 0.7f, 0.7f},                 /* scale: rad per unit, as trained */
    {-0.6f, -0.2f, -0.6f, -1.4f, -0.6f, -1.4f, -0.6f, -0.2f},         /* lower limit, rad */
    {0.6f, 1.4f, 0.6f, 0.2f, 0.6f, 0.2f, 0.6f, 1.4f},                 /* upper limit, rad */
    70.0f,                                                            /* max slew, rad/s */
    1.0471976f,                                                       /* max tilt: 60 degrees */
};
static const float RAMP_S = 1.0f; /* from the pose at ONBOARD_START to the neutral stance */
static_assert(HQ_ACTION_SIZE == N_JOINTS, "the genome drives another number of joints");
static_assert(HQ_LAYERS <= HQ_MAX_LAYERS, "ONBOARD_TELEMETRY carries at most HQ_MAX_LAYERS norms");
#endif

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
#if HQ_ONBOARD
static hq_plastic net; /* the network's weights and activations */
static hq_onboard_sensors sensors;
static float observation[HQ_OBS_SIZE], command[N_JOINTS], previous[N_JOINTS], ramp_from[N_JOINTS];
static uint8_t lifetime = HQ_ONBOARD_STOPPED; /* HQ_ONBOARD_*: running while STARTING or RUNNING */
static uint16_t lifetime_seq = 0, telemetry_every = 1, late_ticks = 0;
static uint32_t tick_limit = 0, control_ticks = 0, network_ticks = 0, tick_us = 0, tick_us_max = 0;
static uint32_t next_tick_us = 0;
static float start_yaw = 0.0f;
#endif

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
    info->capabilities = HQ_ONBOARD ? HQ_CAP_ONBOARD : 0; /* no base estimate: no height or velocity */
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

/* Orientation and body rates; identity and zero when the IMU does not answer (STATE says so). */
static void read_imu(float quaternion[4], float gyro[3]) {
    uint8_t i;
    if (imu_ok) {
        imu::Quaternion q = bno.getQuat();
        imu::Vector<3> g = bno.getVector(Adafruit_BNO055::VECTOR_GYROSCOPE); /* deg/s by default */
        quaternion[0] = (float)q.w();
        quaternion[1] = (float)q.x();
        quaternion[2] = (float)q.y();
        quaternion[3] = (float)q.z();
        for (i = 0; i < 3; i++) gyro[i] = (float)(g[i] * DEG_TO_RAD);
    } else {
        quaternion[0] = 1.0f;
        quaternion[1] = quaternion[2] = quaternion[3] = 0.0f;
        gyro[0] = gyro[1] = gyro[2] = 0.0f;
    }
}

static uint8_t read_contacts(void) {
    uint8_t i, contacts = 0;
    for (i = 0; i < N_FEET; i++) {
        if (digitalRead(FOOT_PINS[i]) == LOW) contacts |= (uint8_t)(1u << i);
    }
    return contacts;
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
    s->contacts = read_contacts();
    /* Hobby servos report nothing back: the position is the one commanded to the servo (after
     * the speed limit), the velocity its rate of change. Use servos with feedback for better. */
    for (i = 0; i < N_JOINTS; i++) {
        s->joint_pos[i] = position[i];
        s->joint_vel[i] = velocity[i];
    }
    read_imu(s->quaternion, s->gyro);
    faults_since_state = 0;
    send(HQ_STATE);
}

/* --- input --------------------------------------------------------------------------------- */
/* Whether a request to move the servos may be obeyed: a session, and no latched ESTOP; else the ERROR why. */
static bool may_move(uint16_t seq) {
    if (!session) {
        send_error(HQ_ERROR_NOT_READY, seq, "send HELLO first");
        return false;
    }
    if (estop) {
        send_error(HQ_ERROR_ESTOPPED, seq, "emergency stop latched; send HELLO to clear");
        return false;
    }
    return true;
}

static void handle_command(uint16_t seq) {
    uint8_t i;
    if (!may_move(seq)) return;
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

#if HQ_ONBOARD
/* --- on-board mode ------------------------------------------------------------------------ */
static bool onboard_running(void) { return lifetime == HQ_ONBOARD_STARTING || lifetime == HQ_ONBOARD_RUNNING; }

static void send_telemetry(void) {
    hq_onboard_telemetry *t = &msg.u.telemetry;
    float squares[HQ_LAYERS];
    uint8_t k;
    hq_plastic_weight_squares(&net, squares);
    t->mcu_time_us = (uint32_t)micros();
    t->start_seq = lifetime_seq;
    t->status = lifetime;
    t->ticks = network_ticks;
    t->tick_us = tick_us;
    t->tick_us_max = tick_us_max;
    t->late_ticks = late_ticks;
    t->n_layers = HQ_LAYERS;
    for (k = 0; k < HQ_LAYERS; k++) t->weight_norms[k] = sqrtf(squares[k]);
    send(HQ_ONBOARD_TELEMETRY);
}

/* A running lifetime ends: the safe pose (or limp, after ESTOP), and its last telemetry. */
static void end_lifetime(uint8_t status) {
    if (!onboard_running()) return;
    lifetime = status;
    commanding = false;
    send_telemetry();
}

static void start_lifetime(uint16_t seq) {
    uint8_t i;
    if (!may_move(seq)) return;
    hq_plastic_reset(&net, msg.u.onboard_start.seed);
    tick_limit = msg.u.onboard_start.ticks;
    telemetry_every = msg.u.onboard_start.telemetry_every;
    for (i = 0; i < N_JOINTS; i++) { /* the ramp starts where the joints are */
        float at = position[i];
        at = at < ONBOARD_ROBOT.lower[i] ? ONBOARD_ROBOT.lower[i] : at;
        ramp_from[i] = previous[i] = target[i] = at > ONBOARD_ROBOT.upper[i] ? ONBOARD_ROBOT.upper[i] : at;
    }
    lifetime = HQ_ONBOARD_STARTING;
    lifetime_seq = seq;
    control_ticks = network_ticks = tick_us = tick_us_max = 0;
    late_ticks = 0;
    commanding = true; /* the servos follow target; the watchdog runs on HEARTBEAT */
    idle = false;
    watchdog_tripped = false;
    last_command_ms = (uint32_t)millis();
    next_tick_us = (uint32_t)micros();
    send_telemetry();
}

/* One control tick: the ramp to the neutral stance, its settle ticks, then the network. */
static void onboard_tick(uint32_t now_us) {
    const uint32_t begin = (uint32_t)micros();
    const float period_s = (float)HQ_PERIOD_US * 1e-6f;
    const uint32_t ramp_ticks = (uint32_t)(RAMP_S / period_s + 0.5f);
    uint8_t i;
    if (now_us - next_tick_us >= HQ_PERIOD_US) { /* a period or more late: count it, don't burst */
        late_ticks++;
        next_tick_us = now_us;
    }
    next_tick_us += HQ_PERIOD_US;
    if (tick_limit != 0 && network_ticks >= tick_limit) {
        end_lifetime(HQ_ONBOARD_DONE);
        return;
    }
    if (!imu_ok) {
        end_lifetime(HQ_ONBOARD_IMU);
        return;
    }
    read_imu(sensors.quaternion, sensors.gyro);
    if (hq_onboard_tilted(&ONBOARD_ROBOT, sensors.quaternion)) {
        end_lifetime(HQ_ONBOARD_ORIENTATION);
        return;
    }
    if (control_ticks < ramp_ticks) {
        const float alpha = (float)(control_ticks + 1) / (float)ramp_ticks;
        for (i = 0; i < N_JOINTS; i++) {
            command[i] = ramp_from[i] + alpha * (ONBOARD_ROBOT.offset[i] - ramp_from[i]);
        }
    } else if (control_ticks < ramp_ticks + HQ_SETTLE_TICKS) {
        for (i = 0; i < N_JOINTS; i++) command[i] = ONBOARD_ROBOT.offset[i];
    } else {
        lifetime = HQ_ONBOARD_RUNNING;
        for (i = 0; i < N_JOINTS; i++) { /* what STATE reports: the commanded angles, their rates */
            sensors.joint_pos[i] = position[i];
            sensors.joint_vel[i] = velocity[i];
        }
        sensors.contacts = read_contacts();
        if (network_ticks == 0) start_yaw = hq_onboard_yaw(sensors.quaternion);
        hq_onboard_observation(&ONBOARD_ROBOT, &sensors, network_ticks, start_yaw, observation);
        network_ticks++;
        if (!hq_onboard_action_command(&ONBOARD_ROBOT, hq_plastic_tick(&net, observation), command)) {
            end_lifetime(HQ_ONBOARD_NON_FINITE);
            return;
        }
    }
    if (hq_onboard_limit(&ONBOARD_ROBOT, command, previous, period_s)) faults_since_state |= HQ_FAULT_CLAMPED;
    for (i = 0; i < N_JOINTS; i++) target[i] = command[i];
    control_ticks++;
    tick_us = (uint32_t)micros() - begin;
    if (tick_us > tick_us_max) tick_us_max = tick_us;
    if (control_ticks % telemetry_every == 0) send_telemetry();
}
#endif

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
#if HQ_ONBOARD
        end_lifetime(HQ_ONBOARD_STOPPED);
#endif
        session = true;
        idle = true;
        estop = false;
        commanding = false;
        watchdog_tripped = false;
        send_info();
        break;
    case HQ_HEARTBEAT:
#if HQ_ONBOARD
        if (onboard_running()) last_command_ms = (uint32_t)millis(); /* the on-board lifetime's watchdog */
#endif
        send(HQ_HEARTBEAT); /* echo: msg still holds the received time */
        break;
    case HQ_ESTOP:
#if HQ_ONBOARD
        end_lifetime(HQ_ONBOARD_ESTOP);
#endif
        estop = true;
        commanding = false;
        break;
    case HQ_SAFE_POSE:
#if HQ_ONBOARD
        end_lifetime(HQ_ONBOARD_SAFE_POSE);
#endif
        commanding = false;
        break;
    case HQ_COMMAND:
#if HQ_ONBOARD
        if (onboard_running()) {
            send_error(HQ_ERROR_TYPE, msg.seq, "an on-board lifetime runs; send ONBOARD_STOP first");
            break;
        }
#endif
        handle_command(msg.seq);
        break;
#if HQ_ONBOARD
    case HQ_ONBOARD_START:
        start_lifetime(msg.seq);
        break;
    case HQ_ONBOARD_STOP:
        if (onboard_running()) {
            end_lifetime(HQ_ONBOARD_STOPPED);
        } else {
            send_telemetry(); /* the last lifetime's */
        }
        break;
#endif
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
#if HQ_ONBOARD
        end_lifetime(HQ_ONBOARD_WATCHDOG);
#endif
        commanding = false;
        watchdog_tripped = true;
    }
    now_us = micros();
#if HQ_ONBOARD
    if (onboard_running() && (int32_t)(now_us - next_tick_us) >= 0) onboard_tick(now_us);
#endif
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
