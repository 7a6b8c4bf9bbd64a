#ifndef VMON_VERSION_H
#define VMON_VERSION_H
#define VMON_VERSION "0.1.0"
#endif
