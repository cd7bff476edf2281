/**
 * The mke2fs.conf banger builds with, passed as MKE2FS_CONFIG so an image does not depend on the
 * host's /etc/mke2fs.conf (distributions differ: newer ones add orphan_file, which kernels before
 * 5.15 cannot mount read-write). The feature set is Debian 12's ext4 default, which Linux 3.18+
 * mounts. Every size type is defined so mke2fs neither warns nor switches to 1 KiB blocks.
 */
export const MKE2FS_CONF = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
${['floppy', 'small', 'big', 'huge'].map((t) => `\t${t} = {\n\t\tinode_ratio = 16384\n\t}\n`).join('')}`
