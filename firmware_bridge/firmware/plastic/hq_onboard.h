/* On-board mode's glue between a robot's sensors and servos and the plastic tick: the genome's
 * observation built from the sensors as the host's adapter builds it from STATE
 * (firmware_bridge/robot.py), and the host's safety rules (firmware_bridge/safety.py) applied on the robot:
 * the calibration from action to command, joint limits, slew limit, orientation guard. C99, float32, no
 * allocation; the observation layout is genome.h's (HQ_OBS_*), so it needs the exported header.
 * docs/protocol.md (On-board mode) says what a lifetime does with them. */
#ifndef HQ_ONBOARD_H
#define HQ_ONBOARD_H

#include <stdint.h>

#include "hq_plastic.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The robot as the robot config and its calibration file describe it, per joint in action order:
 * observed angle = sign * (robot angle - offset); command = offset + sign * scale * action. */
typedef struct {
    float offset[HQ_ACTION_SIZE]; /* rad (position mode; 0 in effort mode) */
    float sign[HQ_ACTION_SIZE];   /* +1 or -1 */
    float scale[HQ_ACTION_SIZE];  /* command units per unit of action */
    float lower[HQ_ACTION_SIZE];  /* command limits */
    float upper[HQ_ACTION_SIZE];
    float max_slew;               /* command units per second */
    float max_tilt;               /* rad: roll or pitch beyond this ends the lifetime */
} hq_onboard_robot;

/* One reading of the sensors, in STATE's units and frames (docs/protocol.md). */
typedef struct {
    float quaternion[4]; /* w x y z, body to world */
    float gyro[3];       /* rad/s, body frame */
    float joint_pos[HQ_ACTION_SIZE];
    float joint_vel[HQ_ACTION_SIZE];
    uint8_t contacts;    /* bit k: foot k on the ground */
} hq_onboard_sensors;

/* Yaw (rad) of a body-to-world quaternion: a lifetime's heading counts from its first network tick's. */
float hq_onboard_yaw(const float *quaternion);

/* The genome's observation (HQ_OBS_SIZE values) for network tick `tick` of a lifetime (the clock counts
 * these ticks) whose first tick saw yaw `start_yaw`. */
void hq_onboard_observation(const hq_onboard_robot *robot, const hq_onboard_sensors *sensors, uint32_t tick,
                            float start_yaw, float *observation);

/* The network's action as joint commands (HQ_ACTION_SIZE values); 0 if an action is not finite. */
int hq_onboard_action_command(const hq_onboard_robot *robot, const float *action, float *command);

/* Limit `command` in place to the joint limits, then to max_slew * period_s from `previous`, which
 * becomes the command; 1 if that changed it. */
int hq_onboard_limit(const hq_onboard_robot *robot, float *command, float *previous, float period_s);

/* 1 if the orientation is not finite, or its roll or pitch is beyond max_tilt. */
int hq_onboard_tilted(const hq_onboard_robot *robot, const float *quaternion);

#ifdef __cplusplus
}
#endif

#endif
