/* test_db.c - the binary COPY encoder without a server: the framing, and a
 * described tuple (NULL, integer[] and empty real[] in array_send's layout,
 * a context column) byte for byte (db_selftest).  The server's side of the
 * same encoding is exercised by every test that writes results (test_e2e,
 * test_migrate). */
#include "db.h"
#include "testutil.h"

int main(void) {
    TU_CHECK(db_selftest() == 0, "db_selftest");
    TU_CHECK(!strcmp(db_kind_name(DB_KIND_HUMAN), "human") && !strcmp(db_kind_name(DB_KIND_HUMAN_CONT), "human_cont") &&
                 !strcmp(db_kind_name(DB_KIND_SAMPLE), "sample"),
             "kind names are the SQL enum's labels");
    return tu_failures ? 1 : 0;
}
