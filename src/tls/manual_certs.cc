#include "tls/manual_certs.h"
