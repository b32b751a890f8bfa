/* Declarations of the Wire (I2C) API the reference sketch uses; see Arduino.h. */
#pragma once
#include <Arduino.h>

class TwoWire {
  public:
    void begin(void);
    void setClock(uint32_t clock);
};
extern TwoWire Wire;
