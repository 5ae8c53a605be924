/* stub: replaced by the decryptor work */
#include "quire/cmds.h"
int cmd_decrypt(int argc, char **argv)
{
	return 2;
}
