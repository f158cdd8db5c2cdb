/* version.h - what `tipcastd --version` and `tipcast-token --version` say:
 * the version (CMake's project(VERSION)), the git commit the binary was
 * built from when known, and the versions of the libraries it runs on. */
#ifndef TIPCAST_VERSION_H
#define TIPCAST_VERSION_H

#include <stdio.h>

/* "0.1.0". */
const char *version_string(void);
/* The git commit, "" when unknown. */
const char *version_commit(void);
/* Writes "PROG VERSION (commit C)" and a line per library to out. */
void version_print(FILE *out, const char *prog);

#endif
