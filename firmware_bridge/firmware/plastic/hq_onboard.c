#include "hq_onboard.h"

#include <math.h>

#define HQ_TWO_PI 6.283185307179586

#if defined(HQ_OBS_HEIGHT_AT) || defined(HQ_OBS_LINEAR_VELOCITY_AT)
#error "the genome observes height or linear velocity: on board there is no base estimate to give it"
#endif

float hq_onboard_yaw(const float *q)
{
    return atan2f(2.0f * (q[0] * q[3] + q[1] * q[2]), 1.0f - 2.0f * (q[2] * q[2] + q[3] * q[3]));
}

void hq_onboard_observation(const hq_onboard_robot *robot, const hq_onboard_sensors *sensors, uint32_t tick,
                            float start_yaw, float *observation)
{
    const float *q = sensors->quaternion;
    (void)robot; /* each is unused by some layouts */
    (void)tick;
    (void)start_yaw;
    (void)q;
#ifdef HQ_OBS_QUATERNION_AT
    for (unsigned k = 0; k < 4u; ++k) {
        observation[HQ_OBS_QUATERNION_AT + k] = q[k] * HQ_OBS_QUATERNION_SCALE;
    }
#endif
#ifdef HQ_OBS_GRAVITY_AT
    observation[HQ_OBS_GRAVITY_AT] = 2.0f * (q[0] * q[2] - q[1] * q[3]) * HQ_OBS_GRAVITY_SCALE;
    observation[HQ_OBS_GRAVITY_AT + 1] = -2.0f * (q[2] * q[3] + q[0] * q[1]) * HQ_OBS_GRAVITY_SCALE;
    observation[HQ_OBS_GRAVITY_AT + 2] = (2.0f * (q[1] * q[1] + q[2] * q[2]) - 1.0f) * HQ_OBS_GRAVITY_SCALE;
#endif
#ifdef HQ_OBS_ANGULAR_VELOCITY_AT
    for (unsigned k = 0; k < 3u; ++k) {
        observation[HQ_OBS_ANGULAR_VELOCITY_AT + k] = sensors->gyro[k] * HQ_OBS_ANGULAR_VELOCITY_SCALE;
    }
#endif
#ifdef HQ_OBS_HEADING_AT
    /* the yaw turned since the first tick, wrapped to [-pi, pi] */
    observation[HQ_OBS_HEADING_AT] =
        (float)remainder((double)hq_onboard_yaw(q) - (double)start_yaw, HQ_TWO_PI) * HQ_OBS_HEADING_SCALE;
#endif
#ifdef HQ_OBS_JOINT_POSITIONS_AT
    for (unsigned j = 0; j < HQ_ACTION_SIZE; ++j) {
        observation[HQ_OBS_JOINT_POSITIONS_AT + j] =
            robot->sign[j] * (sensors->joint_pos[j] - robot->offset[j]) * HQ_OBS_JOINT_POSITIONS_SCALE;
    }
#endif
#ifdef HQ_OBS_JOINT_VELOCITIES_AT
    for (unsigned j = 0; j < HQ_ACTION_SIZE; ++j) {
        observation[HQ_OBS_JOINT_VELOCITIES_AT + j] =
            robot->sign[j] * sensors->joint_vel[j] * HQ_OBS_JOINT_VELOCITIES_SCALE;
    }
#endif
#ifdef HQ_OBS_CONTACTS_AT
    for (unsigned k = 0; k < HQ_OBS_CONTACTS_SIZE; ++k) {
        observation[HQ_OBS_CONTACTS_AT + k] = (float)((sensors->contacts >> k) & 1u) * HQ_OBS_CONTACTS_SCALE;
    }
#endif
#ifdef HQ_OBS_CLOCK_AT
    {
        /* the phase's whole cycles dropped first, so float keeps its precision over a long lifetime */
        double cycles = (double)HQ_OBS_CLOCK_CYCLES_PER_TICK * (double)tick;
        double phase = HQ_TWO_PI * (cycles - floor(cycles));
        observation[HQ_OBS_CLOCK_AT] = (float)sin(phase);
        observation[HQ_OBS_CLOCK_AT + 1] = (float)cos(phase);
    }
#endif
}

int hq_onboard_action_command(const hq_onboard_robot *robot, const float *action, float *command)
{
    for (unsigned j = 0; j < HQ_ACTION_SIZE; ++j) {
        if (!isfinite(action[j])) {
            return 0;
        }
        command[j] = robot->offset[j] + robot->sign[j] * robot->scale[j] * action[j];
    }
    return 1;
}

static float hq_clamp(float value, float low, float high)
{
    return value < low ? low : (value > high ? high : value);
}

int hq_onboard_limit(const hq_onboard_robot *robot, float *command, float *previous, float period_s)
{
    const float step = robot->max_slew * period_s;
    int changed = 0;
    for (unsigned j = 0; j < HQ_ACTION_SIZE; ++j) {
        float safe = hq_clamp(command[j], robot->lower[j], robot->upper[j]);
        safe = hq_clamp(safe, previous[j] - step, previous[j] + step);
        changed |= safe != command[j];
        command[j] = previous[j] = safe;
    }
    return changed;
}

int hq_onboard_tilted(const hq_onboard_robot *robot, const float *q)
{
    for (unsigned k = 0; k < 4u; ++k) {
        if (!isfinite(q[k])) {
            return 1;
        }
    }
    /* roll and pitch as firmware_bridge/safety.py's roll_pitch computes them */
    const float roll = atan2f(2.0f * (q[0] * q[1] + q[2] * q[3]), 1.0f - 2.0f * (q[1] * q[1] + q[2] * q[2]));
    const float pitch = asinf(hq_clamp(2.0f * (q[0] * q[2] - q[3] * q[1]), -1.0f, 1.0f));
    return fabsf(roll) > robot->max_tilt || fabsf(pitch) > robot->max_tilt;
}
