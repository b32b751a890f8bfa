/* Declarations of the Adafruit PWM Servo Driver (PCA9685) API the reference sketch uses, with the
 * library's signatures (v2.4); see Arduino.h. */
#pragma once
#include <Wire.h>

class Adafruit_PWMServoDriver {
  public:
    Adafruit_PWMServoDriver(const uint8_t addr = 0x40, TwoWire &i2c = Wire);
    bool begin(uint8_t prescale = 0);
    void setPWMFreq(float freq);
    uint8_t setPWM(uint8_t num, uint16_t on, uint16_t off);
    void writeMicroseconds(uint8_t num, uint16_t Microseconds);
    void setOscillatorFrequency(uint32_t freq);
};
