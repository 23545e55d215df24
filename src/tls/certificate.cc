#include "tls/certificate.h"
