/* The bus ABI and libcm's C API, as a C99 translation unit sees them. */
#include "cm/bus_abi.h"
#include "cm/cm.h"

int main(void)
{
    struct cm_bus_desc d = {0};
    struct cm_bus_ctrl c = {0};
    d.opcode = CM_BUS_SQ_NOP;
    c.magic = CM_BUS_MAGIC;
    return (int)(sizeof d + sizeof c + sizeof(struct cm_bus_qp) + sizeof(struct cm_bus_attach_msg) +
                 sizeof(struct cm_bus_fwload)) == 0 ? d.opcode : 0;
}
