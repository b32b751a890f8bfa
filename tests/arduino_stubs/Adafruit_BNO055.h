/* Declarations of the Adafruit BNO055 API the reference sketch uses, with the library's
 * signatures (v1.6); see Arduino.h. */
#pragma once
#include <Wire.h>

namespace imu {
class Quaternion {
  public:
    double &w();
    double &x();
    double &y();
    double &z();
};
template <uint8_t N> class Vector {
  public:
    double &operator[](int n);
};
} // namespace imu

class Adafruit_BNO055 {
  public:
    typedef enum { VECTOR_ACCELEROMETER = 0x08, VECTOR_GYROSCOPE = 0x14 } adafruit_vector_type_t;
    Adafruit_BNO055(int32_t sensorID = -1, uint8_t address = 0x28, TwoWire *theWire = &Wire);
    bool begin(void);
    void setExtCrystalUse(bool usextal);
    imu::Vector<3> getVector(adafruit_vector_type_t vector_type);
    imu::Quaternion getQuat(void);
};
