/* stub: replaced by the decryptor work */
#include "quire/cmds.h"
int cmd_run(int argc, char **argv)
{
	return 2;
}
