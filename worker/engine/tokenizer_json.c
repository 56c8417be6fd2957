/* placeholder */
#include "tokenizer.h"
