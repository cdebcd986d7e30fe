// Compiled into cmfw only when it is linked fully static (CM_STATIC_FIRMWARE, the aarch64 cross build).
//
// Debian's libpcap.a is built with D-Bus capture support and so needs libdbus-1.a, which calls two functions
// of libsystemd (socket activation of a D-Bus daemon). There is no static libsystemd. The firmware never
// captures on a D-Bus "interface" nor runs a bus daemon, so these answer what libsystemd answers for a
// process that was not socket-activated: no file descriptors passed, and "not a socket of that kind".
// (C++ with C linkage rather than a .c file: the project's warning flags include C++-only ones.)
extern "C" {

int sd_listen_fds(int unset_environment);
int sd_is_socket(int fd, int family, int type, int listening);

int sd_listen_fds(int /*unset_environment*/)
{
    return 0;
}

int sd_is_socket(int /*fd*/, int /*family*/, int /*type*/, int /*listening*/)
{
    return 0;
}

}  // extern "C"
