/* Declarations of the Arduino core API the reference sketch uses, with the core's signatures, so
 * tests/test_bridge_firmware.py can type-check the sketch with g++. Nothing here runs. */
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LOW 0x0
#define HIGH 0x1
#define INPUT_PULLUP 0x2
#define DEG_TO_RAD 0.017453292519943295769236907684886

class HardwareSerial {
  public:
    void begin(unsigned long baud);
    int available(void);
    int read(void);
    size_t write(uint8_t byte);
    size_t write(const uint8_t *buffer, size_t size);
};
extern HardwareSerial Serial;

unsigned long millis(void);
unsigned long micros(void);
int digitalRead(uint8_t pin);
void pinMode(uint8_t pin, uint8_t mode);
