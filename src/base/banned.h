/* banned — functions that write past a buffer's end or keep hidden state, as git bans them: using
 * one is a compile error. Every source file includes this last, after the system headers (their
 * declarations would not survive the macros). Use snprintf, memcpy with a computed size, strtok_r,
 * or a strbuf instead.
 */
#ifndef SLIPWAY_BANNED_H
#define SLIPWAY_BANNED_H

#define BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#undef gets
#define gets(x) BANNED(gets)

#endif
