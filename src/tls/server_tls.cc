#include "tls/server_tls.h"
