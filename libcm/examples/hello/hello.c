/* hello: opens a card with libcm and says what it is. Usage: hello [DEVICE] (default: the running card). */
#include <cm/cm.h>

#include <errno.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    cm_device *dev = NULL;
    struct cm_device_info info;
    int rc = cm_device_open(argc > 1 ? argv[1] : NULL, &dev);
    if (rc == -ENODEV) {
        printf("hello: no card (%s)\n", cm_strerror(rc));
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "hello: %s\n", cm_strerror(rc));
        return 1;
    }
    cm_device_get_info(dev, &info);
    printf("hello: card %s, firmware %s, %u queue pairs\n", info.path, info.fw_version_str, info.qp_count);
    cm_device_close(dev);
    return 0;
}
