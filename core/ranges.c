/* ranges.c - a set of small integers written as ranges (see ranges.h). */
#include "ranges.h"

#include <stdio.h>
#include <string.h>

int ranges_format(const uint8_t *set, int n, char *out, size_t cap)
{
    size_t len = 0;
    int members = 0;
    int cut = 0;
    out[0] = '\0';
    for (int i = 0; i < n;) {
        if (!set[i]) {
            i++;
            continue;
        }
        int j = i;
        while (j + 1 < n && set[j + 1])
            j++;
        members += j - i + 1;
        if (!cut) {
            char part[32];
            int k = j == i ? snprintf(part, sizeof part, "%s%d", len ? "," : "", i)
                           : snprintf(part, sizeof part, "%s%d-%d", len ? "," : "", i, j);
            /* Room for this part and, should a later one not fit, "...". */
            if (len + (size_t)k + 4 <= cap) {
                memcpy(out + len, part, (size_t)k + 1);
                len += (size_t)k;
            } else {
                cut = 1;
                memcpy(out + len, "...", 4);
            }
        }
        i = j + 1;
    }
    return members;
}
