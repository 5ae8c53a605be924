/* stub: replaced by the decryptor work */
int bench_decrypt(int argc, char **argv);
int bench_decrypt(int argc, char **argv)
{
	return 2;
}
